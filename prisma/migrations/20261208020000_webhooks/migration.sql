-- Webhooks: a person's endpoints (URL, the events they hear, a sealed secret), one delivery
-- row per event and endpoint (the body as signed, the retry schedule's position, the lease
-- of the process sending it), and each attempt as the endpoint answered it.
CREATE TABLE `webhooks` (
    `id` CHAR(36) NOT NULL,
    `user_id` CHAR(36) NOT NULL,
    `url` VARCHAR(2048) NOT NULL,
    `description` VARCHAR(255) NULL,
    `events` JSON NOT NULL,
    `secret_sealed` VARBINARY(255) NOT NULL,
    `disabled_at` DATETIME(3) NULL,
    `disabled_reason` VARCHAR(255) NULL,
    `created_at` DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),

    INDEX `webhooks_user_id_created_at_idx`(`user_id`, `created_at`),
    PRIMARY KEY (`id`)
) DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;

CREATE TABLE `webhook_deliveries` (
    `id` CHAR(36) NOT NULL,
    `webhook_id` CHAR(36) NOT NULL,
    `event` VARCHAR(64) NOT NULL,
    `payload` TEXT NOT NULL,
    `status` ENUM('pending', 'delivered', 'failed', 'cancelled') NOT NULL DEFAULT 'pending',
    `attempts` INTEGER NOT NULL DEFAULT 0,
    `retries` INTEGER NOT NULL DEFAULT 0,
    `next_attempt_at` DATETIME(3) NOT NULL,
    `lease_owner` VARCHAR(100) NULL,
    `lease_until` DATETIME(3) NULL,
    `created_at` DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    `delivered_at` DATETIME(3) NULL,

    INDEX `webhook_deliveries_status_next_attempt_at_idx`(`status`, `next_attempt_at`),
    INDEX `webhook_deliveries_webhook_id_created_at_idx`(`webhook_id`, `created_at`),
    INDEX `webhook_deliveries_lease_owner_idx`(`lease_owner`),
    PRIMARY KEY (`id`)
) DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;

CREATE TABLE `webhook_attempts` (
    `id` CHAR(36) NOT NULL,
    `delivery_id` CHAR(36) NOT NULL,
    `attempt` INTEGER NOT NULL,
    `at` DATETIME(3) NOT NULL,
    `duration_ms` INTEGER NOT NULL,
    `status_code` INTEGER NULL,
    `error` VARCHAR(1024) NULL,
    `response_body` TEXT NULL,

    UNIQUE INDEX `webhook_attempts_delivery_id_attempt_key`(`delivery_id`, `attempt`),
    PRIMARY KEY (`id`)
) DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;

ALTER TABLE `webhooks` ADD CONSTRAINT `webhooks_user_id_fkey` FOREIGN KEY (`user_id`) REFERENCES `users`(`id`) ON DELETE CASCADE ON UPDATE CASCADE;
ALTER TABLE `webhook_deliveries` ADD CONSTRAINT `webhook_deliveries_webhook_id_fkey` FOREIGN KEY (`webhook_id`) REFERENCES `webhooks`(`id`) ON DELETE CASCADE ON UPDATE CASCADE;
ALTER TABLE `webhook_attempts` ADD CONSTRAINT `webhook_attempts_delivery_id_fkey` FOREIGN KEY (`delivery_id`) REFERENCES `webhook_deliveries`(`id`) ON DELETE CASCADE ON UPDATE CASCADE;
