-- AlterTable
ALTER TABLE `images` ADD COLUMN `pool_size` INTEGER NOT NULL DEFAULT 0;

-- CreateTable
CREATE TABLE `vms` (
    `id` CHAR(36) NOT NULL,
    `name` VARCHAR(64) NOT NULL,
    `image_id` CHAR(36) NOT NULL,
    `machine_id` CHAR(36) NULL,
    `state` ENUM('booting', 'running', 'stopped', 'failed') NOT NULL DEFAULT 'booting',
    `state_reason` VARCHAR(1024) NULL,
    `node` VARCHAR(255) NOT NULL,
    `cpus` INTEGER NOT NULL,
    `memory_mb` INTEGER NOT NULL,
    `ssh_port` INTEGER NOT NULL,
    `host_key_fingerprint` VARCHAR(64) NOT NULL,
    `host_key_public` VARCHAR(255) NOT NULL,
    `host_key_sealed` VARBINARY(2048) NOT NULL,
    `root_key_public` VARCHAR(255) NOT NULL,
    `pid` INTEGER NULL,
    `boot_started_at` DATETIME(3) NULL,
    `boot_ms` INTEGER NULL,
    `created_at` DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    `updated_at` DATETIME(3) NOT NULL,

    UNIQUE INDEX `vms_name_key`(`name`),
    UNIQUE INDEX `vms_machine_id_key`(`machine_id`),
    UNIQUE INDEX `vms_node_ssh_port_key`(`node`, `ssh_port`),
    INDEX `vms_image_id_idx`(`image_id`),
    INDEX `vms_node_state_idx`(`node`, `state`),
    PRIMARY KEY (`id`)
) DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;

-- AddForeignKey
ALTER TABLE `vms` ADD CONSTRAINT `vms_image_id_fkey` FOREIGN KEY (`image_id`) REFERENCES `images`(`id`) ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE `vms` ADD CONSTRAINT `vms_machine_id_fkey` FOREIGN KEY (`machine_id`) REFERENCES `machines`(`id`) ON DELETE SET NULL ON UPDATE CASCADE;
