// Real SSH machines for tests: each is a container made from berth's locally built
// Debian image, running sshd on its own 127.0.0.1 port (host networking), with its own
// /etc/passwd, processes and sudo. Nothing touches the host's accounts.
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import Docker from 'dockerode';
import { freePort } from '../../src/infra/ports.js';
import { generateSshKeyPair, parseHostKey } from '../../src/infra/ssh.js';
import { NodeSSH } from 'node-ssh';


export const BASE_IMAGE = 'berth/debian-sshd:bookworm';
/** Marks this run's containers (set by the global setup): another checkout's run leaves them alone. */
const RUN_LABEL = `berth-test=${process.env.BERTH_TEST_RUN ?? 'default'}`;
const docker = new Docker({ socketPath: '/var/run/docker.sock' });

/** One keypair per test process for root on every test machine. */
export const rootKey = generateSshKeyPair();

export interface TestMachine {
  name: string;
  host: string;
  port: number;
  rootPassword: string;
  /** The OpenSSH public key line of the machine's host key. */
  hostKey: string;
  /** Runs a shell command inside the machine as root (not over SSH): for assertions. */
  sh(command: string): Promise<{ code: number; out: string }>;
  /** Replaces the machine by a fresh one on the same port: same address, new host key, no accounts. */
  replace(): Promise<void>;
  /** Freezes / thaws every process of the machine: it accepts connections but never answers. */
  pause(): Promise<void>;
  unpause(): Promise<void>;
  stop(): Promise<void>;
}

/** A 127.0.0.1 port nothing listens on right now (another process may still take it). */
export { freePort };

async function waitForSsh(port: number, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const banner = await new Promise<string>((resolve) => {
      const sock = net.connect(port, '127.0.0.1');
      sock.setTimeout(500);
      sock.once('data', (d) => {
        sock.destroy();
        resolve(d.toString());
      });
      sock.once('error', () => resolve(''));
      sock.once('timeout', () => {
        sock.destroy();
        resolve('');
      });
    });
    if (banner.startsWith('SSH-')) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`sshd on port ${port} did not answer within ${timeoutMs} ms`);
}

const SSHD = [
  'set -e',
  'ssh-keygen -q -t ed25519 -N "" -f /etc/ssh/ssh_host_ed25519_key',
  'install -d -m 700 /root/.ssh',
  'printf "%s\\n" "$AUTHORIZED_KEY" > /root/.ssh/authorized_keys',
  'chmod 600 /root/.ssh/authorized_keys',
  'printf "root:%s\\n" "$ROOT_PASSWORD" | chpasswd',
  'exec /usr/sbin/sshd -D -e -p "$PORT" -o ListenAddress=127.0.0.1 -o HostKey=/etc/ssh/ssh_host_ed25519_key ' +
    '-o PermitRootLogin=yes -o PasswordAuthentication=yes -o UsePAM="$USE_PAM" -o MaxStartups=100:30:200',
].join(' && ');

async function exec(container: Docker.Container, command: string): Promise<{ code: number; out: string }> {
  const e = await container.exec({ Cmd: ['sh', '-c', command], AttachStdout: true, AttachStderr: true });
  const stream = await e.start({ hijack: true, stdin: false });
  const chunks: Buffer[] = [];
  await new Promise<void>((resolve) => {
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => resolve());
  });
  // Docker multiplexes stdout/stderr with 8-byte frame headers.
  const buf = Buffer.concat(chunks);
  let out = '';
  for (let i = 0; i + 8 <= buf.length; ) {
    const size = buf.readUInt32BE(i + 4);
    out += buf.subarray(i + 8, i + 8 + size).toString();
    i += 8 + size;
  }
  const { ExitCode } = await e.inspect();
  return { code: ExitCode ?? -1, out };
}

/** The fingerprint of the host key served on a port (what a client would be shown). */
async function servedFingerprint(port: number): Promise<string | null> {
  const ssh = new NodeSSH();
  let seen: string | null = null;
  await ssh
    .connect({
      host: '127.0.0.1',
      port,
      username: 'probe',
      password: 'probe',
      readyTimeout: 5000,
      hostVerifier: (key: Buffer) => {
        seen = parseHostKey(`ssh-ed25519 ${key.toString('base64')}`);
        return false; // only the key was wanted
      },
    } as Parameters<NodeSSH['connect']>[0])
    .catch(() => {});
  ssh.dispose();
  return seen;
}

export interface MachineOptions {
  /** sshd checks passwords through PAM, as a stock Debian sshd does (UsePAM yes): what root can hook into. */
  pam?: boolean;
}

export async function startMachine(name = `m-${randomBytes(3).toString('hex')}`, opts: MachineOptions = {}): Promise<TestMachine> {
  let port = await freePort();
  const rootPassword = randomBytes(12).toString('base64url');
  let container!: Docker.Container;

  /**
   * Test files run in parallel processes: a port found free may be taken by another
   * file's machine before this sshd binds it. Proof that the sshd answering is ours: the
   * container still runs and serves the host key it generated. Otherwise, another port.
   */
  async function boot() {
    for (let attempt = 1; ; attempt++) {
      const ours = await create()
        .then(async () => {
          const key = (await exec(container, 'cat /etc/ssh/ssh_host_ed25519_key.pub')).out.trim();
          const running = (await container.inspect()).State.Running;
          return running && (await servedFingerprint(port)) === parseHostKey(key);
        })
        .catch(() => false);
      if (ours) return;
      await container?.remove({ force: true }).catch(() => {});
      if (attempt === 5) throw new Error(`could not start an sshd of our own (last port ${port})`);
      port = await freePort();
      machine.port = port;
    }
  }

  async function create() {
    container = await docker.createContainer({
      Image: BASE_IMAGE,
      name: `berth-test-${name}-${randomBytes(3).toString('hex')}`,
      Labels: { 'berth-test': RUN_LABEL.split('=')[1]! },
      Cmd: ['sh', '-c', SSHD],
      Env: [`PORT=${port}`, `AUTHORIZED_KEY=${rootKey.public}`, `ROOT_PASSWORD=${rootPassword}`, `USE_PAM=${opts.pam ? 'yes' : 'no'}`],
      HostConfig: { NetworkMode: 'host', AutoRemove: false },
    });
    await container.start();
    await waitForSsh(port);
  }

  const machine: TestMachine = {
    name,
    host: '127.0.0.1',
    port,
    rootPassword,
    hostKey: '',
    sh: (command) => exec(container, command),
    async replace() {
      await container.remove({ force: true });
      await boot();
      machine.hostKey = (await exec(container, 'cat /etc/ssh/ssh_host_ed25519_key.pub')).out.trim();
    },
    pause: () => container.pause(),
    unpause: () => container.unpause(),
    async stop() {
      await container.remove({ force: true }).catch(() => {});
    },
  };
  await boot();
  machine.hostKey = (await exec(container, 'cat /etc/ssh/ssh_host_ed25519_key.pub')).out.trim();
  return machine;
}

export async function startMachines(n: number, prefix = 'm'): Promise<TestMachine[]> {
  return Promise.all(Array.from({ length: n }, (_, i) => startMachine(`${prefix}${i + 1}-${randomBytes(2).toString('hex')}`)));
}

/** Removes this checkout's test machine containers (the run's teardown, and leftovers of a killed run). */
export async function removeAllTestMachines(): Promise<void> {
  const list = await docker.listContainers({ all: true, filters: { label: [RUN_LABEL] } });
  await Promise.all(list.map((c) => docker.getContainer(c.Id).remove({ force: true }).catch(() => {})));
}

/** Logs in over SSH as a reservation account would, and runs a command. */
export async function sshRun(
  target: { host: string; port: number; username: string; password?: string; privateKey?: string },
  command: string,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const ssh = new NodeSSH();
  await ssh.connect({ ...target, readyTimeout: 10_000, tryKeyboard: false });
  // A machine that goes away after the command (a VM killed or reset by the test) resets
  // the closing connection; node-ssh no longer listens for errors then.
  ssh.connection?.on('error', () => {});
  try {
    return await ssh.execCommand(command);
  } finally {
    ssh.dispose();
  }
}

/** Makes account creation on a machine take `seconds` longer: a slow host, or a window for a crash. */
export async function slowDownUseradd(m: TestMachine, seconds: number): Promise<void> {
  const r = await m.sh(
    `mv /usr/sbin/useradd /usr/sbin/useradd.real && printf '#!/bin/sh\\nsleep ${seconds}\\nexec /usr/sbin/useradd.real "$@"\\n' > /usr/sbin/useradd && chmod +x /usr/sbin/useradd`,
  );
  if (r.code !== 0) throw new Error(`could not slow down useradd: ${r.out}`);
}

export async function restoreUseradd(m: TestMachine): Promise<void> {
  await m.sh('[ -e /usr/sbin/useradd.real ] && mv /usr/sbin/useradd.real /usr/sbin/useradd');
}
