-- Time in the pool: a reservation may wait in a queue (queued) or be booked ahead on
-- concrete machines (scheduled). A queued request keeps what it asked for, to be matched
-- when machines come free; both keep the account's secrets sealed until the accounts are
-- made; notices of a coming end are sent once each; every scheduling decision first writes
-- the one planner row, which serialises decisions across processes (and, unlike GET_LOCK,
-- is replicated by a Galera cluster).
ALTER TABLE `reservations`
  MODIFY `status` ENUM('queued', 'scheduled', 'provisioning', 'active', 'releasing', 'released', 'failed') NOT NULL DEFAULT 'provisioning',
  ADD COLUMN `machine_count` INTEGER NOT NULL DEFAULT 0,
  ADD COLUMN `request` JSON NULL,
  ADD COLUMN `start_at` DATETIME(3) NULL,
  ADD COLUMN `wait_until` DATETIME(3) NULL,
  ADD COLUMN `estimated_start` DATETIME(3) NULL,
  ADD COLUMN `account_secrets` TEXT NULL,
  ADD COLUMN `sealed_password` VARCHAR(512) NULL;

-- Reservations made before count their machines as they hold them.
UPDATE `reservations` r SET `machine_count` = (SELECT COUNT(*) FROM `reservation_machines` rm WHERE rm.`reservation_id` = r.`id`);

CREATE INDEX `reservations_status_start_at_idx` ON `reservations`(`status`, `start_at`);
CREATE INDEX `reservations_status_created_at_idx` ON `reservations`(`status`, `created_at`);

CREATE TABLE `reservation_notices` (
    `reservation_id` CHAR(36) NOT NULL,
    `minutes_before` INTEGER NOT NULL,
    `sent_at` DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),

    PRIMARY KEY (`reservation_id`, `minutes_before`)
) DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;

ALTER TABLE `reservation_notices` ADD CONSTRAINT `reservation_notices_reservation_id_fkey` FOREIGN KEY (`reservation_id`) REFERENCES `reservations`(`id`) ON DELETE CASCADE ON UPDATE CASCADE;

CREATE TABLE `planner_lock` (
    `id` INTEGER NOT NULL,
    `decisions` BIGINT NOT NULL DEFAULT 0,

    PRIMARY KEY (`id`)
) DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;

INSERT INTO `planner_lock` (`id`) VALUES (1);
