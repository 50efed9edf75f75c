# berth as a container image. The image runs berth only; give it a database with
# DATABASE_URL (docker-compose.yml runs MariaDB next to it) — the embedded MariaDB is
# the bare-metal default and is not part of this image. Targets:
#   runtime  identity, machines, reservations (docker-compose.yml; docker build --target runtime .)
#   vm       also builds images and boots VMs: QEMU, e2fsprogs and Debian's kernel inside,
#            the host's Docker engine through its socket (docker-compose.vm.yml); runs as root
# NODE_IMAGE is the Node 20 base: a build argument, so that a local copy can stand in for it.
ARG NODE_IMAGE=node:20-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
# npm ci checks the lock against every workspace's manifest.
COPY clients/typescript/package.json clients/typescript/
COPY clients/cli/package.json clients/cli/
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json prisma.config.ts ./
COPY prisma prisma
COPY src src
# `prisma generate` needs no schema engine; the CLI only wants a path to an executable.
RUN PRISMA_SCHEMA_ENGINE_BINARY=/bin/true node node_modules/prisma/build/index.js generate \
 && node_modules/.bin/tsc -p tsconfig.build.json \
 && npm prune --omit=dev

FROM ${NODE_IMAGE} AS runtime
WORKDIR /app
ENV NODE_ENV=production HOST=0.0.0.0 PORT=8080 BERTH_DATA_DIR=/data
COPY --from=build /app/node_modules node_modules
COPY --from=build /app/dist dist
COPY prisma prisma
COPY package.json ./
COPY scripts/serve.sh scripts/serve.sh
RUN mkdir -p /data && chown node:node /data
USER node
VOLUME /data
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s CMD node -e "fetch('http://127.0.0.1:8080/readyz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
# serve.sh exec's node on dist/ (berth is PID 1 and gets docker stop's SIGTERM) with the
# allocator and heap settings that keep it small.
CMD ["bash", "scripts/serve.sh"]

# Last, so that building `runtime` (legacy builder included) never builds it.
FROM runtime AS vm
USER root
COPY scripts/fetch-kernel.sh scripts/fetch-kernel.sh
# berth-guest (the static tool that applies a VM's identity inside it) is compiled from
# this source by berth, with gcc, once per source into the cache.
COPY scripts/guest scripts/guest
# The kernel is fetched at build time into the image (never installed): VMs need no network
# later. The package lists stay: at start-up the same script finds the kernel's version with apt-cache.
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      qemu-system-x86 qemu-utils e2fsprogs busybox-static cpio xz-utils gcc >/dev/null \
 && BERTH_CACHE_DIR=/opt/berth/cache bash scripts/fetch-kernel.sh
ENV BERTH_CACHE_DIR=/opt/berth/cache
