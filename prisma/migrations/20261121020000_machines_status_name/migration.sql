-- Allocation reads the available machines in name order.
-- CreateIndex
CREATE INDEX `machines_status_name_idx` ON `machines`(`status`, `name`);
