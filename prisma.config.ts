// Prisma CLI configuration. Only `prisma generate` runs on machines without Prisma's
// schema engine; `prisma migrate deploy` works where the engine exists, because berth's
// own migrator records migrations in Prisma's `_prisma_migrations` table.
import { defineConfig } from 'prisma/config';

export default defineConfig({
  schema: 'prisma/schema.prisma',
  migrations: { path: 'prisma/migrations' },
  datasource: { url: process.env.DATABASE_URL ?? 'mysql://berth@127.0.0.1:3306/berth' },
});
