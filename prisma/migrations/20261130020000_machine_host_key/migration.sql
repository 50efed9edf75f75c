-- The pinned host key itself (an OpenSSH public key line), so that clients can log in
-- with strict host-key checking: given at registration, or learned on first contact.
ALTER TABLE `machines` ADD COLUMN `host_key` VARCHAR(2048) NULL;
