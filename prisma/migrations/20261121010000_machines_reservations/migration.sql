-- CreateTable
CREATE TABLE `machines` (
    `id` CHAR(36) NOT NULL,
    `name` VARCHAR(64) NOT NULL,
    `host` VARCHAR(255) NOT NULL,
    `port` INTEGER NOT NULL DEFAULT 22,
    `username` VARCHAR(64) NOT NULL,
    `credential_kind` ENUM('password', 'private_key') NOT NULL,
    `credential` VARBINARY(8192) NOT NULL,
    `host_key_fingerprint` VARCHAR(64) NULL,
    `type` VARCHAR(32) NOT NULL DEFAULT 'server',
    `tags` JSON NOT NULL,
    `allow_sudo` BOOLEAN NOT NULL DEFAULT true,
    `status` ENUM('available', 'reserved', 'maintenance', 'offline') NOT NULL DEFAULT 'available',
    `status_reason` VARCHAR(255) NULL,
    `reservation_id` CHAR(36) NULL,
    `last_checked_at` DATETIME(3) NULL,
    `created_at` DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    `updated_at` DATETIME(3) NOT NULL,

    UNIQUE INDEX `machines_name_key`(`name`),
    INDEX `machines_status_type_idx`(`status`, `type`),
    INDEX `machines_reservation_id_idx`(`reservation_id`),
    PRIMARY KEY (`id`)
) DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;

-- CreateTable
CREATE TABLE `reservations` (
    `id` CHAR(36) NOT NULL,
    `user_id` CHAR(36) NULL,
    `owner_username` VARCHAR(64) NOT NULL,
    `status` ENUM('provisioning', 'active', 'releasing', 'released', 'failed') NOT NULL DEFAULT 'provisioning',
    `account_username` VARCHAR(32) NOT NULL,
    `duration_minutes` INTEGER NOT NULL,
    `expires_at` DATETIME(3) NULL,
    `max_expires_at` DATETIME(3) NOT NULL,
    `lease_owner` VARCHAR(100) NULL,
    `lease_until` DATETIME(3) NULL,
    `failure_reason` VARCHAR(1024) NULL,
    `release_reason` VARCHAR(32) NULL,
    `idempotency_key` VARCHAR(255) NULL,
    `request_hash` CHAR(64) NULL,
    `created_at` DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    `activated_at` DATETIME(3) NULL,
    `released_at` DATETIME(3) NULL,

    UNIQUE INDEX `reservations_user_id_idempotency_key_key`(`user_id`, `idempotency_key`),
    INDEX `reservations_status_expires_at_idx`(`status`, `expires_at`),
    INDEX `reservations_status_lease_until_idx`(`status`, `lease_until`),
    PRIMARY KEY (`id`)
) DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;

-- CreateTable
CREATE TABLE `reservation_machines` (
    `reservation_id` CHAR(36) NOT NULL,
    `machine_id` CHAR(36) NOT NULL,

    INDEX `reservation_machines_machine_id_idx`(`machine_id`),
    PRIMARY KEY (`reservation_id`, `machine_id`)
) DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;

-- AddForeignKey
ALTER TABLE `reservations` ADD CONSTRAINT `reservations_user_id_fkey` FOREIGN KEY (`user_id`) REFERENCES `users`(`id`) ON DELETE SET NULL ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE `reservation_machines` ADD CONSTRAINT `reservation_machines_reservation_id_fkey` FOREIGN KEY (`reservation_id`) REFERENCES `reservations`(`id`) ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE `reservation_machines` ADD CONSTRAINT `reservation_machines_machine_id_fkey` FOREIGN KEY (`machine_id`) REFERENCES `machines`(`id`) ON DELETE CASCADE ON UPDATE CASCADE;
