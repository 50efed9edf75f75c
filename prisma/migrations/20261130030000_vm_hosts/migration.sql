-- VM hosts: each berth process records that it is alive; a host whose process stopped
-- doing so makes its VMs unavailable. Work a VM's own host must do (reset, start, stop,
-- delete) is handed to it through the VM's row.
CREATE TABLE `vm_hosts` (
    `name` VARCHAR(255) NOT NULL,
    `public_host` VARCHAR(255) NOT NULL,
    `started_at` DATETIME(3) NOT NULL,
    `heartbeat_at` DATETIME(3) NOT NULL,

    PRIMARY KEY (`name`)
) DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;

-- AlterTable
ALTER TABLE `vms` ADD COLUMN `pending_action` ENUM('reset', 'start', 'stop', 'delete') NULL,
    ADD COLUMN `pending_since` DATETIME(3) NULL;

-- CreateIndex
CREATE INDEX `vms_node_pending_action_idx` ON `vms`(`node`, `pending_action`);
