-- AlterTable
ALTER TABLE `vms` ADD COLUMN `start_mode` ENUM('restore', 'cold') NULL;
