# berth as a container image. The image runs berth only; give it a database with
# DATABASE_URL (docker-compose.yml runs MariaDB next to it) — the embedded MariaDB is
# the bare-metal default and is not part of this image.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json prisma.config.ts ./
COPY prisma prisma
COPY src src
# `prisma generate` needs no schema engine; the CLI only wants a path to an executable.
RUN PRISMA_SCHEMA_ENGINE_BINARY=/bin/true node node_modules/prisma/build/index.js generate \
 && node_modules/.bin/tsc -p tsconfig.build.json \
 && npm prune --omit=dev

FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production HOST=0.0.0.0 PORT=8080 BERTH_DATA_DIR=/data
COPY --from=build /app/node_modules node_modules
COPY --from=build /app/dist dist
COPY prisma prisma
COPY package.json ./
RUN mkdir -p /data && chown node:node /data
USER node
VOLUME /data
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s CMD node -e "fetch('http://127.0.0.1:8080/readyz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
CMD ["node", "--disable-warning=FAST_JWT_CACHE_KEY_BUILDER_SECURITY_RISK", "dist/server.js"]
