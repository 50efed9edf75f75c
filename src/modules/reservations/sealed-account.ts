// What a queued request or a booking keeps of its account until the accounts are made: the
// password hash and SSH key, and a password berth generated (shown to the owner once, on
// the first read after activation), each sealed with the secret box (AES-256-GCM), never in
// the clear in the database.
import type { SecretBox } from '../../infra/secret-box.js';
import type { AccountSecrets } from './setup.js';
import type { SealedAccount } from './status.js';

const seal = (box: SecretBox, text: string) => Buffer.from(box.seal(text)).toString('base64');
const open = (box: SecretBox, sealed: string) => box.open(Buffer.from(sealed, 'base64'));

export function sealAccount(box: SecretBox, secrets: AccountSecrets, generatedPassword: string | undefined): SealedAccount {
  return {
    accountSecrets: seal(box, JSON.stringify(secrets)),
    sealedPassword: generatedPassword === undefined ? null : seal(box, generatedPassword),
  };
}

export function openAccountSecrets(box: SecretBox, sealed: string): AccountSecrets {
  return JSON.parse(open(box, sealed)) as AccountSecrets;
}

export const openPassword = open;
