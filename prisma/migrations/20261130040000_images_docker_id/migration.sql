-- CreateIndex
CREATE INDEX `images_docker_id_idx` ON `images`(`docker_id`);
