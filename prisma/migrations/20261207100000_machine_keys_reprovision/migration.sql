-- A tenant with sudo on a machine that is never reimaged stays root after release, and can
-- read whatever berth or later tenants type into it. Machines registered from now on give
-- no sudo unless the admin asks (existing machines keep what they have); a machine whose
-- account had sudo waits in needs_reprovision when released; berth replaces a machine's
-- password by a key of its own unless the admin keeps the password (machines registered
-- with a password before get that key on their next login).
ALTER TABLE `machines`
  MODIFY `status` ENUM('available', 'reserved', 'maintenance', 'offline', 'needs_reprovision') NOT NULL DEFAULT 'available',
  MODIFY `allow_sudo` BOOLEAN NOT NULL DEFAULT false,
  ADD COLUMN `keep_password` BOOLEAN NOT NULL DEFAULT false,
  ADD COLUMN `sudo_granted` BOOLEAN NOT NULL DEFAULT false;
-- An account made before this migration on a machine that allowed sudo had it: the machine
-- it still holds (reserved, or offline with its cleanup pending) must wait for a reinstall
-- once released, like one provisioned from now on.
UPDATE `machines` SET `sudo_granted` = true WHERE `allow_sudo` = true AND `reservation_id` IS NOT NULL;
