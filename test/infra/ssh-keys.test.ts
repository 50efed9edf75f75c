// berth's SSH key pairs (VM host keys, VM root keys) must be ones OpenSSH accepts: ssh2's
// generator makes a malformed one about once in 256 (mscdex/ssh2#1390).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { generateSshKeyPair, parseHostKey } from '../../src/infra/ssh.js';

describe('generateSshKeyPair', () => {
  it('makes only well-formed Ed25519 pairs, whose halves belong together', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-keys-'));
    try {
      // 2000 pairs: with ssh2's generator alone, ~8 would be malformed.
      for (let i = 0; i < 2000; i++) {
        const pair = generateSshKeyPair('test');
        expect(Buffer.from(pair.public.split(' ')[1]!, 'base64')).toHaveLength(51);
        expect(parseHostKey(pair.public)).toMatch(/^SHA256:/);
        if (i % 400 === 0) {
          // OpenSSH itself derives the same public key from the private half.
          const file = path.join(dir, `k${i}`);
          fs.writeFileSync(file, pair.private, { mode: 0o600 });
          expect(execFileSync('ssh-keygen', ['-y', '-f', file]).toString().trim().split(' ').slice(0, 2)).toEqual(pair.public.split(' ').slice(0, 2));
        }
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
