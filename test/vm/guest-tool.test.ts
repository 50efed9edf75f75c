// berth-guest, the static tool that applies a VM's identity inside the guest, run on the
// host in a private mount and UTS namespace and a chroot, under strace: what it does to the
// kernel (the RNG reseed, the hostname) and to the files is seen directly. (A clone's
// random output differs from its siblings' even without the reseed most of the time: the
// kernel reseeds on its own early in a boot. The reseed is what makes it certain.) The
// clock is left alone here: CLOCK_REALTIME is the host's; test/vm/snapshot.test.ts checks
// a clone's time.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateSshKeyPair } from '../../src/infra/ssh.js';
import { compileGuestTool } from '../../src/infra/vm/boot-artifacts.js';
import { identityMessage } from '../../src/infra/vm/identity.js';

const run = promisify(execFile);
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-guest-tool-test-'));
let tool: string;

/** Runs `berth-guest identity` on `message` in a fresh chroot; its exit code, the files it left and its system calls. */
async function applyIdentity(message: string) {
  const root = fs.mkdtempSync(path.join(work, 'root-'));
  for (const d of ['dev', 'etc', 'root']) fs.mkdirSync(path.join(root, d));
  fs.writeFileSync(path.join(root, 'dev/urandom'), '');
  fs.copyFileSync(tool, path.join(root, 'berth-guest'));
  fs.chmodSync(path.join(root, 'berth-guest'), 0o755);
  fs.writeFileSync(path.join(work, 'message'), message);
  const trace = path.join(root, '..', `${path.basename(root)}.strace`);
  const script = `mount --bind /dev/urandom "$1/dev/urandom" && exec strace -e trace=ioctl,open,rename,sethostname -o "$2" chroot "$1" /berth-guest identity < "$3"`;
  const code = await run('unshare', ['--mount', '--uts', '--fork', 'sh', '-c', script, 'sh', root, trace, path.join(work, 'message')]).then(
    () => 0,
    (err: { code?: number }) => err.code ?? -1,
  );
  const file = (f: string) => (fs.existsSync(path.join(root, f)) ? { content: fs.readFileSync(path.join(root, f), 'utf8'), mode: fs.statSync(path.join(root, f)).mode & 0o777 } : null);
  return { code, file, calls: fs.readFileSync(trace, 'utf8') };
}

beforeAll(async () => {
  tool = await compileGuestTool(work);
});
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

describe('berth-guest identity', () => {
  it('reseeds the kernel RNG with the host randomness before it writes anything, then writes the identity', async () => {
    const hostKey = generateSshKeyPair();
    const message = identityMessage({ hostname: 'vm-one', hostKey, authorizedKeys: ['ssh-ed25519 AAAAkey1 a', 'ssh-ed25519 AAAAkey2 b'] }, { withClock: false });
    const { code, file, calls } = await applyIdentity(message);
    expect(code, calls).toBe(0);

    // 64 bytes of host randomness, credited, then an immediate reseed of the CRNG.
    const lines = calls.split('\n');
    const add = lines.findIndex((l) => /ioctl\(\d+, RNDADDENTROPY, \{entropy_count=512, buf_size=64,.*\) = 0/.test(l));
    const reseed = lines.findIndex((l) => /ioctl\(\d+, RNDRESEEDCRNG\)\s+= 0/.test(l));
    const firstWrite = lines.findIndex((l) => l.includes('O_CREAT'));
    expect(add, calls).toBeGreaterThanOrEqual(0);
    expect(reseed).toBeGreaterThan(add);
    expect(firstWrite).toBeGreaterThan(reseed);
    expect(calls).toMatch(/sethostname\("vm-one", 6\)\s+= 0/);

    expect(file('etc/ssh/ssh_host_ed25519_key')).toEqual({ content: hostKey.private, mode: 0o600 });
    expect(file('etc/ssh/ssh_host_ed25519_key.pub')).toEqual({ content: `${hostKey.public}\n`, mode: 0o644 });
    expect(file('root/.ssh/authorized_keys')).toEqual({ content: 'ssh-ed25519 AAAAkey1 a\nssh-ed25519 AAAAkey2 b\n', mode: 0o600 });
    expect(file('etc/hostname')).toEqual({ content: 'vm-one\n', mode: 0o644 });
    expect(file('etc/machine-id')?.content).toMatch(/^[0-9a-f]{32}\n$/);
  });

  it('refuses an identity that lacks a part, or is cut short, and writes nothing', async () => {
    const full = identityMessage({ hostname: 'vm-two', hostKey: generateSshKeyPair(), authorizedKeys: ['ssh-ed25519 AAAAkey1 a'] }, { withClock: false });
    const withoutKey = full.split('\n').filter((l) => !l.startsWith('host-key ')).join('\n');
    for (const message of [withoutKey, full.replace('\nend\n', '\n')]) {
      const { code, file, calls } = await applyIdentity(message);
      expect(code).toBe(1);
      expect(calls).not.toContain('RNDRESEEDCRNG');
      expect(file('etc/ssh/ssh_host_ed25519_key')).toBeNull();
      expect(file('etc/hostname')).toBeNull();
    }
  });
});
