import { describe, expect, it } from 'vitest';
import { fingerprintOfKeyBlob, generateSshKeyPair, parseHostKey } from '../../src/infra/ssh.js';

describe('host keys', () => {
  it('turn an OpenSSH public key line into its SHA256 fingerprint, comment or not', () => {
    const { public: line } = generateSshKeyPair('a comment');
    const blob = Buffer.from(line.split(' ')[1]!, 'base64');
    const fp = fingerprintOfKeyBlob(blob);
    expect(fp).toMatch(/^SHA256:[A-Za-z0-9+/]{43}$/);
    expect(parseHostKey(line)).toBe(fp);
    expect(parseHostKey(line.split(' ').slice(0, 2).join(' '))).toBe(fp);
    expect(parseHostKey(`  ${fp}  `)).toBe(fp);
  });

  it('refuse garbled lines: a wrong type, a truncated key, not a key at all', () => {
    const [, b64] = generateSshKeyPair().public.split(' ');
    expect(parseHostKey(`ssh-rsa ${b64}`)).toBeNull();
    expect(parseHostKey(`ssh-ed25519 ${b64!.slice(0, 10)}`)).toBeNull();
    expect(parseHostKey('SHA256:tooshort')).toBeNull();
    expect(parseHostKey('hello')).toBeNull();
  });
});
