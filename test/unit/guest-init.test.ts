import { describe, expect, it } from 'vitest';
import { guestInit, imageCommand } from '../../src/infra/vm/guest-init.js';
import { identityMessage } from '../../src/infra/vm/identity.js';

const key = { private: 'PRIVATE', public: 'ssh-ed25519 AAAA' };

describe('the guest init', () => {
  it('applies the identity, starts sshd, then the image command as its user, in its workdir, with its env', () => {
    const init = guestInit({
      command: { argv: ['/usr/bin/app', '--flag', "it's"], env: ['MODE=prod'], user: 'app', workdir: '/srv' },
      egress: 'none',
    });
    expect(init.startsWith('#!/berth/bin/busybox sh\n')).toBe(true);
    expect(init.indexOf('berth-guest identity')).toBeLessThan(init.indexOf('start_sshd;'));
    expect(init.indexOf('start_sshd;')).toBeLessThan(init.indexOf("starting the image's command"));
    expect(init).toContain("export 'MODE=prod'");
    expect(init).toContain("cd '/srv'");
    expect(init).toContain(`"$(image_path runuser)" -u 'app' -- '/usr/bin/app' '--flag' 'it'\\''s'`);
  });

  it('takes numeric users with setpriv, runs root commands as they are, and none without a command', () => {
    expect(guestInit({ command: { argv: ['x'], env: [], user: '1000:100', workdir: null }, egress: 'none' })).toContain(
      `"$(image_path setpriv)" --reuid=1000 --regid=100 --clear-groups 'x'`,
    );
    expect(guestInit({ command: { argv: ['x'], env: [], user: 'root', workdir: null }, egress: 'none' })).toContain(`exec "$(image_path 'x')"`);
    expect(guestInit({ command: null, egress: 'none' })).not.toContain("starting the image's command");
  });

  it('quotes what a Dockerfile may put in an argument, the env or the workdir', () => {
    const hostile = "$(reboot); `id` 'x' \"y\"";
    const init = guestInit({ command: { argv: ['/bin/app', hostile], env: [`A=${hostile}`], user: null, workdir: hostile }, egress: 'none' });
    // Every occurrence sits inside single quotes, with its own quotes escaped.
    const quoted = `'${hostile.replace(/'/g, `'\\''`)}'`;
    expect(init.split(quoted).length - 1).toBe(2);
    expect(init).toContain(`'A=${hostile.replace(/'/g, `'\\''`)}'`);
  });

  it('makes a host that knows its own name, with a resolver only where the guest has a network', () => {
    const none = guestInit({ command: null, egress: 'none' });
    // The name is the identity's (berth-guest writes /etc/hostname), in /etc/hosts once applied, in both paths.
    expect(none).toContain('127.0.1.1\\t%s\\n');
    expect(none.split('  own_name\n').length - 1).toBe(2);
    expect(none).toContain(': >/etc/resolv.conf');
    expect(none).toContain('-o UseDNS=no');
    expect(guestInit({ command: null, egress: 'internet' })).toContain("echo 'nameserver 10.0.2.3' >/etc/resolv.conf");
  });

  it("reads an image's command from its Docker config", () => {
    expect(imageCommand({ entrypoint: ['/e'], cmd: ['c'], env: ['A=1'], user: 'u', workdir: '/w' })).toEqual({ argv: ['/e', 'c'], env: ['A=1'], user: 'u', workdir: '/w' });
    expect(imageCommand({ entrypoint: null, cmd: null })).toBeNull();
    expect(imageCommand(null)).toBeNull();
  });
});

describe("a VM's identity", () => {
  it('carries fresh randomness and a machine-id each time, and the clock only for a restore', () => {
    const id = { hostname: 'devbox-1', hostKey: key, authorizedKeys: ['ssh-ed25519 BBBB root'] };
    const [a, b] = [identityMessage(id, { withClock: false }), identityMessage(id, { withClock: true })];
    const field = (msg: string, name: string) => msg.split('\n').find((l) => l.startsWith(`${name} `));
    expect(field(a, 'random')).not.toBe(field(b, 'random'));
    expect(field(a, 'machine-id')).not.toBe(field(b, 'machine-id'));
    expect(field(a, 'time')).toBeUndefined();
    expect(b.startsWith('time ')).toBe(true);
    expect(a.endsWith('\nend\n')).toBe(true);
    expect(field(a, 'hostname')).toBe('hostname devbox-1');
  });

  it('refuses a hostname that is not one', () => {
    for (const hostname of ['', 'a b', "$(reboot)", 'x'.repeat(65), '-lead']) {
      expect(() => identityMessage({ hostname, hostKey: key, authorizedKeys: [] }, { withClock: false })).toThrow(/not a hostname/);
    }
  });
});
