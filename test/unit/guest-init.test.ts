import { describe, expect, it } from 'vitest';
import { guestInit } from '../../src/infra/vm/qemu.js';

describe('the guest init', () => {
  it('starts sshd, then the image command as its user, in its workdir, with its env', () => {
    const init = guestInit({
      name: 'devbox-1',
      command: { argv: ['/usr/bin/app', '--flag', "it's"], env: ['MODE=prod'], user: 'app', workdir: '/srv' },
      egress: 'none',
    });
    expect(init.startsWith('#!/bin/sh\n')).toBe(true);
    expect(init).toContain("hostname 'devbox-1'");
    expect(init.indexOf('/usr/sbin/sshd')).toBeLessThan(init.indexOf("starting the image's command"));
    expect(init).toContain("export 'MODE=prod'");
    expect(init).toContain("cd '/srv'");
    expect(init).toContain(`runuser -u 'app' -- '/usr/bin/app' '--flag' 'it'\\''s'`);
  });

  it('takes numeric users with setpriv, runs root commands as they are, and none without a command', () => {
    expect(guestInit({ name: 'a', command: { argv: ['x'], env: [], user: '1000:100', workdir: null }, egress: 'none' })).toContain("setpriv --reuid=1000 --regid=100 --clear-groups 'x'");
    expect(guestInit({ name: 'a', command: { argv: ['x'], env: [], user: 'root', workdir: null }, egress: 'none' })).toContain("exec 'x'");
    expect(guestInit({ name: 'a', command: null, egress: 'none' })).not.toContain("starting the image's command");
  });

  it('quotes what a Dockerfile may put in a name or an argument', () => {
    const hostile = "$(reboot); `id` 'x' \"y\"";
    const init = guestInit({ name: hostile, command: { argv: [hostile], env: [`A=${hostile}`], user: null, workdir: hostile }, egress: 'none' });
    // Every occurrence sits inside single quotes, with its own quotes escaped.
    const quoted = `'${hostile.replace(/'/g, `'\\''`)}'`;
    expect(init.split(quoted).length - 1).toBe(5);
  });

  it('makes a host that knows its own name, with a resolver only where the guest has a network', () => {
    const none = guestInit({ name: 'devbox-1', command: null, egress: 'none' });
    expect(none).toContain("127.0.1.1\\t%s\\n");
    expect(none).toContain(": >/etc/resolv.conf");
    expect(none).toContain('-o UseDNS=no');
    expect(guestInit({ name: 'devbox-1', command: null, egress: 'internet' })).toContain("echo 'nameserver 10.0.2.3' >/etc/resolv.conf");
  });
});
