// berth-guest: what berth's guest init needs done fast and that no shell tool does, in a
// static binary with no libc (it runs on any image: only the kernel's system calls). Under
// emulation every process started costs tens of ms, so the identity is applied here, in
// one process, rather than by a shell pipeline per file.
//
//   berth-guest identity   reads the VM's identity (src/infra/vm/identity.ts: `key value`
//                          lines, then `end`) from stdin and applies it, in this order:
//                          - `time SEC NSEC`: the wall clock (a restored guest wakes with
//                            the clock of the moment its template was snapshotted);
//                          - `random B64`: host randomness added to the kernel's pool and
//                            credited (RNDADDENTROPY; the host's CRNG is trusted), then the
//                            CRNG reseeded at once (RNDRESEEDCRNG): a clone must not go on
//                            with the random state every other clone of its template has;
//                          - `host-key`, `host-key-pub` (B64): sshd's ed25519 host key;
//                          - `authorized-keys` (B64): root's authorized_keys;
//                          - `hostname`, `machine-id`: sethostname, /etc/hostname,
//                            /etc/machine-id.
//                          The random state is renewed before any file is written.
//   berth-guest reap       PID 1's last job: reaps orphans, asleep until a child exits, so
//                          an idle guest is not woken every second by a shell loop.
//
// Built by src/infra/vm/boot-artifacts.ts with: gcc -static -nostdlib -Os
#define SYS_read 0
#define SYS_write 1
#define SYS_open 2
#define SYS_close 3
#define SYS_rt_sigprocmask 14
#define SYS_ioctl 16
#define SYS_wait4 61
#define SYS_rename 82
#define SYS_mkdir 83
#define SYS_fchmod 91
#define SYS_rt_sigtimedwait 128
#define SYS_sethostname 170
#define SYS_clock_settime 227
#define O_WRONLY 01
#define O_CREAT 0100
#define O_TRUNC 01000
#define WNOHANG 1
#define SIG_BLOCK 0
#define SIGCHLD 17
#define CLOCK_REALTIME 0
#define RNDADDENTROPY 0x40085203 /* _IOW('R', 0x03, int[2]) */
#define RNDRESEEDCRNG 0x5207     /* _IO('R', 0x07) */
#define MAX_MESSAGE 8192

static long sys(long n, long a, long b, long c, long d) {
  long ret;
  register long r10 __asm__("r10") = d;
  __asm__ volatile("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10) : "rcx", "r11", "memory");
  return ret;
}

static long length(const char *s) {
  long n = 0;
  while (s[n]) n++;
  return n;
}

static int fail(const char *what) {
  sys(SYS_write, 2, (long)"berth-guest: ", 13, 0);
  sys(SYS_write, 2, (long)what, length(what), 0);
  sys(SYS_write, 2, (long)"\n", 1, 0);
  return 1;
}

static int same(const char *a, const char *b) {
  while (*a && *a == *b) a++, b++;
  return *a == *b;
}

/** Decodes base64 in place; the decoded length, or -1 for anything that is not base64. */
static long unbase64(char *s) {
  long out = 0, bits = 0, acc = 0;
  for (char *p = s; *p && *p != '='; p++) {
    int v = *p >= 'A' && *p <= 'Z' ? *p - 'A' : *p >= 'a' && *p <= 'z' ? *p - 'a' + 26 : *p >= '0' && *p <= '9' ? *p - '0' + 52 : *p == '+' ? 62 : *p == '/' ? 63 : -1;
    if (v < 0) return -1;
    acc = (acc << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      s[out++] = (char)((acc >> bits) & 0xff);
    }
  }
  return out;
}

static long number(const char *s, const char **end) {
  long v = 0;
  for (; *s >= '0' && *s <= '9'; s++) v = v * 10 + (*s - '0');
  *end = s;
  return v;
}

/** Writes a whole file by way of a temporary one and a rename: a reader never sees half of it. */
static int put(const char *path, const char *data, long size, int mode) {
  char tmp[128];
  long n = length(path);
  if (n + 5 > (long)sizeof tmp) return fail("path too long");
  for (long i = 0; i < n; i++) tmp[i] = path[i];
  tmp[n] = '.', tmp[n + 1] = 'n', tmp[n + 2] = 'e', tmp[n + 3] = 'w', tmp[n + 4] = 0;
  long fd = sys(SYS_open, (long)tmp, O_WRONLY | O_CREAT | O_TRUNC, mode, 0);
  if (fd < 0) return fail(path);
  sys(SYS_fchmod, fd, mode, 0, 0);
  int ok = sys(SYS_write, fd, (long)data, size, 0) == size;
  sys(SYS_close, fd, 0, 0, 0);
  if (!ok || sys(SYS_rename, (long)tmp, (long)path, 0, 0) != 0) return fail(path);
  return 0;
}

static int reseed(const char *bytes, long size) {
  struct {
    int entropy_bits;
    int size;
    char bytes[256];
  } pool;
  if (size < 32 || size > (long)sizeof pool.bytes) return fail("want 32 to 256 random bytes");
  for (long i = 0; i < size; i++) pool.bytes[i] = bytes[i];
  pool.size = (int)size;
  pool.entropy_bits = (int)size * 8;
  long fd = sys(SYS_open, (long)"/dev/urandom", O_WRONLY, 0, 0);
  if (fd < 0) return fail("cannot open /dev/urandom");
  int ok = sys(SYS_ioctl, fd, RNDADDENTROPY, (long)&pool, 0) == 0 && sys(SYS_ioctl, fd, RNDRESEEDCRNG, 0, 0) == 0;
  sys(SYS_close, fd, 0, 0, 0);
  for (long i = 0; i < (long)sizeof pool.bytes; i++) ((volatile char *)pool.bytes)[i] = 0;
  return ok ? 0 : fail("the kernel refused to reseed its RNG");
}

struct identity {
  char *time, *random, *host_key, *host_key_pub, *authorized_keys, *hostname, *machine_id;
};

static int apply(struct identity *id) {
  if (id->time) {
    const char *end;
    long ts[2];
    ts[0] = number(id->time, &end);
    if (*end != ' ') return fail("bad time");
    ts[1] = number(end + 1, &end);
    if (*end || ts[1] > 999999999 || sys(SYS_clock_settime, CLOCK_REALTIME, (long)ts, 0, 0) != 0) return fail("cannot set the clock");
  }
  if (!id->random || !id->host_key || !id->host_key_pub || !id->authorized_keys || !id->hostname || !id->machine_id) return fail("the identity lacks a field");
  long n = unbase64(id->random);
  if (n < 0 || reseed(id->random, n)) return 1;
  sys(SYS_mkdir, (long)"/etc/ssh", 0755, 0, 0);
  sys(SYS_mkdir, (long)"/root/.ssh", 0700, 0, 0);
  if ((n = unbase64(id->host_key)) < 0 || put("/etc/ssh/ssh_host_ed25519_key", id->host_key, n, 0600)) return 1;
  if ((n = unbase64(id->host_key_pub)) < 0 || put("/etc/ssh/ssh_host_ed25519_key.pub", id->host_key_pub, n, 0644)) return 1;
  if ((n = unbase64(id->authorized_keys)) < 0 || put("/root/.ssh/authorized_keys", id->authorized_keys, n, 0600)) return 1;
  long len = length(id->hostname);
  if (len == 0 || len > 64 || sys(SYS_sethostname, (long)id->hostname, len, 0, 0) != 0) return fail("cannot set the hostname");
  id->hostname[len] = '\n';
  if (put("/etc/hostname", id->hostname, len + 1, 0644)) return 1;
  len = length(id->machine_id);
  if (len != 32) return fail("bad machine-id");
  id->machine_id[len] = '\n';
  return put("/etc/machine-id", id->machine_id, len + 1, 0444);
}

/** Reads `key value` lines up to `end` from stdin (the channel delivers them in pieces). */
static int identity(void) {
  static char msg[MAX_MESSAGE];
  long size = 0;
  for (;;) {
    long n = sys(SYS_read, 0, (long)msg + size, sizeof msg - 1 - size, 0);
    if (n <= 0) return fail("the identity ended early");
    size += n;
    msg[size] = 0;
    if (size >= 5 && same(msg + size - 5, "\nend\n")) break;
    if (size == sizeof msg - 1) return fail("the identity is too long");
  }
  struct identity id = {0};
  for (char *line = msg; *line;) {
    char *next = line;
    while (*next && *next != '\n') next++;
    if (*next) *next++ = 0;
    char *value = line;
    while (*value && *value != ' ') value++;
    if (*value) *value++ = 0;
    if (same(line, "time")) id.time = value;
    else if (same(line, "random")) id.random = value;
    else if (same(line, "host-key")) id.host_key = value;
    else if (same(line, "host-key-pub")) id.host_key_pub = value;
    else if (same(line, "authorized-keys")) id.authorized_keys = value;
    else if (same(line, "hostname")) id.hostname = value;
    else if (same(line, "machine-id")) id.machine_id = value;
    line = next;
  }
  int result = apply(&id);
  for (long i = 0; i < (long)sizeof msg; i++) ((volatile char *)msg)[i] = 0;
  return result;
}

// SIGCHLD stays blocked, so the kernel queues it even for PID 1 (which ignores signals it
// has no handler for), and waiting for it sleeps until a child, or an orphan, exits.
__attribute__((noreturn)) static void reap(void) {
  unsigned long chld = 1UL << (SIGCHLD - 1);
  sys(SYS_rt_sigprocmask, SIG_BLOCK, (long)&chld, 0, sizeof chld);
  for (;;) {
    int status;
    while (sys(SYS_wait4, -1, (long)&status, WNOHANG, 0) > 0) {
    }
    sys(SYS_rt_sigtimedwait, (long)&chld, 0, 0, sizeof chld);
  }
}

int cmain(long *sp) {
  long argc = sp[0];
  char **argv = (char **)(sp + 1);
  if (argc == 2 && same(argv[1], "identity")) return identity();
  if (argc == 2 && same(argv[1], "reap")) reap();
  fail("usage: berth-guest identity | reap");
  return 2;
}

__asm__(".globl _start\n_start:\n  xor %rbp, %rbp\n  mov %rsp, %rdi\n  and $-16, %rsp\n  call cmain\n  mov %rax, %rdi\n  mov $60, %rax\n  syscall\n");
