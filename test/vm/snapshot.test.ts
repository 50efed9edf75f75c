// Template snapshots and clones on real QEMU (TCG here), at the infra level: a template is
// made in the background while the first VM boots cold; clones of it each get their own
// host key, machine-id, hostname, randomness and the right time, and share nothing they
// write; the template's files are untouched by them; a corrupted snapshot falls back to a
// cold boot that works (and the template is made again); a changed image base makes the
// snapshot stale. Everything here runs under BERTH_VM_EGRESS=internet, the policy under
// which QEMU drops root for berth-vm: a clone's QEMU must still load the template's state
// then (handed in open) and forward its port (the default, `none`, is in test/vms).
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Docker from 'dockerode';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateSshKeyPair, parseHostKey, type SshSession } from '../../src/infra/ssh.js';
import { stopVm } from '../../src/infra/vm/qemu.js';
import { imageToExt4 } from '../../src/infra/vm/rootfs.js';
import { createVmRuntime, type VmRuntime } from '../../src/infra/vm/runtime.js';
import { startVm, type StartSpec, type Started } from '../../src/infra/vm/start.js';
import { createTemplates, TEMPLATE_FILES, type Template, type TemplateSource, type Templates } from '../../src/infra/vm/template.js';
import { TEMPLATE_HOST_KEY } from '../../src/infra/vm/guest-init.js';
import { VM_USER } from '../../src/infra/vm/isolation.js';
import { BASE_IMAGE, freePort, rootKey } from '../helpers/ssh-machines.js';
import { vmLogin } from '../helpers/vm-login.js';

const docker = new Docker({ socketPath: '/var/run/docker.sock' });
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-snapshot-test-'));
const base = path.join(work, 'base.ext4');
const runtime = createVmRuntime({ cacheDir: path.resolve('.data/cache'), accel: 'tcg', egress: 'internet' });
const logged: { msg: string; obj: object }[] = [];
const log = { info: (obj: object, msg: string) => logged.push({ obj, msg }), warn: (obj: object, msg: string) => logged.push({ obj, msg }) };
let rt: VmRuntime;
let templates: Templates;
let source: TemplateSource;
const dirs: string[] = [];

/** The VM's own host key and a fresh directory and port: what berth gives every VM. */
async function spec(name: string): Promise<StartSpec> {
  const dir = path.join(work, 'vms', name);
  dirs.push(dir);
  return {
    imageId: source.imageId,
    dir,
    name,
    kernel: rt.kernel,
    initramfs: rt.initramfs,
    base,
    sshBind: '127.0.0.1',
    sshPort: await freePort(),
    egress: source.egress,
    cpus: source.cpus,
    memoryMb: source.memoryMb,
    accel: 'tcg',
    hostKey: generateSshKeyPair(),
    authorizedKeys: [rootKey.public],
    command: source.command,
  };
}

const uidOf = (user: string) => execFileSync('id', ['-u', user], { encoding: 'utf8' }).trim();

async function sh(session: SshSession, script: string): Promise<string> {
  const r = await session.runScript(script, []);
  expect(r.code, r.stderr).toBe(0);
  return r.stdout.trim();
}

/** A template, once there is a current one (made in the background). */
async function templateReady(notId?: string, timeoutMs = 180_000): Promise<Template> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = await templates.lookup(source);
    if (found.template && found.template.id !== notId) return found.template;
    if (Date.now() > deadline) throw new Error(`no template within ${timeoutMs} ms (${found.reason}); log: ${JSON.stringify(logged.slice(-5))}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

const sha256 = (file: string) =>
  new Promise<string>((resolve, reject) => {
    const h = createHash('sha256');
    fs.createReadStream(file).on('data', (d) => h.update(d)).on('end', () => resolve(h.digest('hex'))).on('error', reject);
  });
const templateHashes = async (t: Template) => Object.fromEntries(await Promise.all(Object.values(TEMPLATE_FILES).map(async (f) => [f, await sha256(path.join(t.dir, f))])));

beforeAll(async () => {
  rt = await runtime.get();
  await imageToExt4(docker, BASE_IMAGE, base);
  source = {
    imageId: 'snapshot-test-image',
    base,
    // An image command, as Docker would run it: it starts after sshd in every clone.
    command: { argv: ['/bin/sh', '-c', 'hostname > /run/image-command; exec sleep infinity'], env: [], user: null, workdir: null },
    cpus: 1,
    memoryMb: 512,
    egress: 'internet',
  };
  templates = createTemplates({ runtime, dirOf: (id) => path.join(work, 'images', id, 'templates'), bootTimeoutMs: 150_000, log });
}, 120_000);

afterAll(async () => {
  await templates.close();
  for (const d of dirs) await stopVm(d);
  fs.rmSync(work, { recursive: true, force: true });
});

describe('template snapshots and clones', () => {
  let template: Template;

  it('the first VM boots cold while the template is made in the background', async () => {
    const first = await spec('first');
    const started: Started = await startVm(first, { templates, log });
    expect(started.mode).toBe('cold');
    expect(started.reason).toMatch(/no snapshot/);
    const session = await vmLogin(first);
    expect(await sh(session, 'hostname')).toBe('first');
    session.close();
    await stopVm(first.dir);

    template = await templateReady();
    // RAM stays in the memory file: the device state is small, the file sparse.
    expect(fs.statSync(template.state).size).toBeLessThan(1 << 20);
    expect(fs.statSync(template.memory).size).toBe(512 * 1048576);
    expect(fs.statSync(template.memory).blocks * 512).toBeLessThan(512 * 1048576);
    expect(logged.some((l) => l.msg === 'made a VM template')).toBe(true);
  }, 400_000);

  it('two clones have their own host key, machine-id, hostname, randomness and the right time, and share nothing they write', async () => {
    // A clone wakes up with the clock of the moment its template was saved: old enough
    // for that to show, unless berth sets the clock.
    const madeAt = Date.parse(JSON.parse(fs.readFileSync(path.join(template.dir, TEMPLATE_FILES.meta), 'utf8')).madeAt);
    await new Promise((r) => setTimeout(r, Math.max(0, madeAt + 5000 - Date.now())));
    const before = await templateHashes(template);
    const templatePub = fs.readFileSync(path.join(template.dir, 'seed.tar'), 'latin1').match(/ssh-ed25519 ([A-Za-z0-9+/=]+)/)!;
    const templateKey = parseHostKey(templatePub[0]);
    const [a, b] = [await spec('clone-a'), await spec('clone-b')];
    const seen: Record<string, Record<string, string>> = {};
    for (const s of [a, b]) {
      const started = await startVm(s, { templates, log });
      expect(started.mode, started.reason).toBe('restore');
      expect(started.phases!.restore).toBeGreaterThan(0);
      // Its QEMU runs as the unprivileged user of the `internet` policy.
      expect(fs.readFileSync(`/proc/${started.pid}/status`, 'utf8')).toMatch(new RegExp(`^Uid:\\s+${uidOf(VM_USER)}\\s`, 'm'));
      const session = await vmLogin(s, 20_000);
      // The host key is this VM's own (pinned above), not the template's.
      expect(session.fingerprint).toBe(parseHostKey(s.hostKey.public));
      expect(session.fingerprint).not.toBe(templateKey);
      const hostNow = Date.now() / 1000;
      const [guestTime, hostname, machineId, random, bootId, command] = (
        await sh(session, 'date +%s.%N; hostname; cat /etc/machine-id; head -c 32 /dev/urandom | od -An -tx1 | tr -d " \\n"; echo; cat /proc/sys/kernel/random/boot_id; cat /run/image-command')
      ).split('\n');
      expect(Math.abs(Number(guestTime) - hostNow)).toBeLessThan(2);
      expect(hostname).toBe(s.name);
      expect(command).toBe(s.name);
      // It knows its own name, and has the resolver of its policy.
      expect(await sh(session, 'hostname -f; grep -c "127.0.1.1.*clone-" /etc/hosts; cat /etc/resolv.conf')).toBe(`${s.name}\n1\nnameserver 10.0.2.3`);
      seen[s.name] = { machineId: machineId!, random: random!, bootId: bootId! };
      expect(await sh(session, 'cat /etc/ssh/ssh_host_ed25519_key.pub')).toBe(s.hostKey.public.trim());
      // The template's own throwaway key is nowhere in the clone.
      expect(await sh(session, `ls /berth; grep -rl "${templatePub[1]}" /etc /berth 2>/dev/null || true`)).toBe('bin\ninit');
      session.close();
    }
    expect(seen['clone-a']!.machineId).toMatch(/^[0-9a-f]{32}$/);
    expect(seen['clone-a']!.machineId).not.toBe(seen['clone-b']!.machineId);
    expect(seen['clone-a']!.random).toHaveLength(64);
    expect(seen['clone-a']!.random).not.toBe(seen['clone-b']!.random);
    expect(seen['clone-a']!.bootId).not.toBe(seen['clone-b']!.bootId);

    // What one clone writes, neither the other nor a later clone sees.
    const sa = await vmLogin(a, 20_000);
    await sh(sa, 'echo mine > /root/written-by-a && sync');
    sa.close();
    const sb = await vmLogin(b, 20_000);
    expect(await sh(sb, 'cat /root/written-by-a 2>/dev/null || echo absent')).toBe('absent');
    sb.close();
    const c = await spec('clone-c');
    expect((await startVm(c, { templates, log })).mode).toBe('restore');
    const sc = await vmLogin(c, 20_000);
    expect(await sh(sc, 'cat /root/written-by-a 2>/dev/null || echo absent')).toBe('absent');
    sc.close();

    for (const s of [a, b, c]) await stopVm(s.dir);
    // The clones only ever read the template (made before any of them had an identity), so
    // nothing of theirs is in it; its seed holds only the throwaway host key sshd starts with.
    expect(await templateHashes(template)).toEqual(before);
    expect(fs.readFileSync(template.seed, 'latin1')).toContain(TEMPLATE_HOST_KEY);
  }, 300_000);

  it('a corrupted snapshot falls back to a cold boot that works, and the template is made again', async () => {
    const state = fs.readFileSync(template.state);
    state.fill(0x5a, Math.floor(state.length / 3), Math.floor(state.length / 3) + 4096);
    fs.chmodSync(template.state, 0o644);
    fs.writeFileSync(template.state, state);

    const s = await spec('after-corruption');
    const started = await startVm(s, { templates, log });
    expect(started.mode).toBe('cold');
    expect(started.reason).toMatch(/restoring its snapshot failed/);
    expect(logged.some((l) => l.msg.includes('a VM restore failed'))).toBe(true);
    const session = await vmLogin(s);
    expect(await sh(session, 'hostname')).toBe('after-corruption');
    session.close();
    await stopVm(s.dir);

    const remade = await templateReady(template.id);
    expect(remade.id).not.toBe(template.id);
    const again = await spec('after-remake');
    expect((await startVm(again, { templates, log })).mode).toBe('restore');
    await stopVm(again.dir);
    template = remade;
  }, 400_000);

  it('a changed image base makes its snapshot stale: a cold boot, and a new template', async () => {
    fs.utimesSync(base, new Date(), new Date(Date.now() + 1000));
    const found = await templates.lookup(source);
    expect(found.template).toBeNull();
    expect(found.reason).toMatch(/stale/);

    const s = await spec('after-change');
    const started = await startVm(s, { templates, log });
    expect(started.mode).toBe('cold');
    await stopVm(s.dir);
    const remade = await templateReady(template.id);
    expect(remade.id).not.toBe(template.id);
  }, 400_000);
});
