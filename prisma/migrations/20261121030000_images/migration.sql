-- CreateTable
CREATE TABLE `images` (
    `id` CHAR(36) NOT NULL,
    `name` VARCHAR(64) NOT NULL,
    `status` ENUM('building', 'ready', 'failed') NOT NULL DEFAULT 'building',
    `error` VARCHAR(2048) NULL,
    `docker_id` VARCHAR(128) NULL,
    `size_bytes` BIGINT NULL,
    `build_ms` INTEGER NULL,
    `convert_ms` INTEGER NULL,
    `config` JSON NULL,
    `heartbeat_at` DATETIME(3) NULL,
    `created_at` DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    `updated_at` DATETIME(3) NOT NULL,

    UNIQUE INDEX `images_name_key`(`name`),
    INDEX `images_status_heartbeat_at_idx`(`status`, `heartbeat_at`),
    PRIMARY KEY (`id`)
) DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
