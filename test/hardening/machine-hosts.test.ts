// A machine's host reaches OpenSSH on users' machines (`berth ssh`, ssh-keyscan): the audit
// registered `-oProxyCommand=…` as a host, and the CLI ran the command. The server takes
// only host names (RFC 1123) and IP literals, wherever a host comes in: POST, PATCH, import,
// and the VM host's public name in the configuration.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { adminSession, createTestApp, json, type Session, type TestApp } from '../helpers/app.js';

let t: TestApp;
let admin: Session;
beforeAll(async () => {
  t = await createTestApp();
  admin = await adminSession(t);
});
afterAll(() => t.close());

const HOSTILE = ['-oProxyCommand=touch /tmp/berth-pwned', '-Jattacker.example', '-J attacker.example', '-F/etc/passwd', 'a b', 'host\nnext', 'user@host', '[::1]', 'under_score', 'a..b', ''];
const FINE = ['node-1.lab.example', 'sshbox', '10.0.0.21', '::1', 'fe80::1', 'example.com.'];

const post = (url: string, payload: unknown) => t.app.inject({ method: 'POST', url, headers: admin.auth, payload: payload as object });

describe('machine hosts', () => {
  it('are refused (400, naming the field) unless a host name or an IP address, on create', async () => {
    for (const [i, host] of HOSTILE.entries()) {
      const res = await post('/v1/machines', { name: `hostile-${i}`, host, username: 'root', password: 'pw' });
      expect(res.statusCode, host).toBe(400);
      expect(json(res)).toMatchObject({ code: 'validation_failed', errors: [expect.objectContaining({ pointer: '/host' })] });
    }
    for (const [i, host] of FINE.entries()) {
      const res = await post('/v1/machines', { name: `fine-${i}`, host, username: 'root', password: 'pw' });
      expect(res.statusCode, `${host}: ${res.body}`).toBe(201);
    }
    expect(await t.prisma.machine.count({ where: { name: { startsWith: 'hostile-' } } })).toBe(0);
  });

  it('are refused on PATCH, and the machine keeps its host', async () => {
    for (const host of HOSTILE) {
      const res = await t.app.inject({ method: 'PATCH', url: '/v1/machines/fine-0', headers: admin.auth, payload: { host } });
      expect(res.statusCode, host).toBe(400);
      expect(json(res).code).toBe('validation_failed');
    }
    expect((await t.prisma.machine.findUniqueOrThrow({ where: { name: 'fine-0' } })).host).toBe('node-1.lab.example');
  });

  it('are refused entry by entry on import, in YAML and JSON', async () => {
    const entries = HOSTILE.map((host, i) => ({ name: `imported-${i}`, host, user: 'root', password: 'pw' }));
    const res = json(await post('/v1/machines/import', { machines: entries }));
    expect(res).toMatchObject({ created: 0, updated: 0 });
    expect(res.errors.map((e: { index: number }) => e.index)).toEqual(HOSTILE.map((_, i) => i));
    for (const e of res.errors) expect(e).toMatchObject({ pointer: `/machines/${e.index}/host`, code: 'validation_failed' });
    const yaml = await t.app.inject({
      method: 'POST',
      url: '/v1/machines/import',
      headers: { ...admin.auth, 'content-type': 'application/yaml' },
      payload: 'machines:\n  - name: from-yaml\n    host: "-oProxyCommand=touch /tmp/berth-pwned"\n    user: root\n    password: pw\n',
    });
    expect(json(yaml)).toMatchObject({ created: 0, errors: [{ pointer: '/machines/0/host', code: 'validation_failed' }] });
    expect(await t.prisma.machine.count({ where: { OR: [{ name: { startsWith: 'imported-' } }, { name: 'from-yaml' }] } })).toBe(0);
  });

  it('of VMs (BERTH_VM_PUBLIC_HOST) are refused at start-up', () => {
    // -J makes OpenSSH jump through another host: only letters, dots and a dash, and still an option.
    expect(() => loadConfig({ NODE_ENV: 'test', BERTH_VM_PUBLIC_HOST: '-Jattacker.example' })).toThrow(/BERTH_VM_PUBLIC_HOST/);
    expect(loadConfig({ NODE_ENV: 'test', BERTH_VM_PUBLIC_HOST: 'vmhost1.example.com' }).vms.publicHost).toBe('vmhost1.example.com');
  });
});
