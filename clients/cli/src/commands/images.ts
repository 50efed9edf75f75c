// berth images: build an image from a Dockerfile or a directory and follow its log (admin),
// list, show, remove.
import fs from 'node:fs';
import path from 'node:path';
import { unwrap, type components } from '@berth/client';
import { Option, type Command } from 'commander';
import { Context } from '../context.js';
import { EXIT, usageError } from '../errors.js';
import { withExamples } from '../help.js';
import { listAll, PAGE_SIZE } from '../http/lists.js';
import { packContext } from '../images/context.js';
import { formatBytes, formatMs, formatTime, shortId } from '../output/format.js';
import { startProgress } from '../output/progress.js';
import { formatFields, formatTable } from '../output/table.js';
import { resolveImage } from '../resolve.js';

type Image = components['schemas']['Image'];
const STATUSES = ['building', 'ready', 'failed'] as const;
const POLL_MS = 1000;

const imageSummary = (i: Image) =>
  i.status === 'ready'
    ? `image ${i.name} ready: ${formatBytes(i.size_bytes)}, built in ${formatMs(i.build_ms)}, converted in ${formatMs(i.convert_ms)}`
    : `image ${i.name} ${i.status}${i.error ? `: ${i.error}` : ''}`;

/** Starts the build: a directory is sent as a tar build context, a single file as the Dockerfile alone. */
async function startBuild(ctx: Context, source: string, name: string) {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(source);
  } catch {
    throw usageError(`${source}: no such file or directory`);
  }
  if (stat.isFile()) {
    const dockerfile = fs.readFileSync(source, 'utf8');
    return unwrap(await ctx.api.POST('/v1/images', { body: { name, dockerfile } }));
  }
  if (!fs.existsSync(path.join(source, 'Dockerfile'))) throw usageError(`${source} has no Dockerfile`);
  const progress = startProgress(`packing ${source}…`);
  const context = await packContext(source).catch((err: Error) => {
    progress.done();
    throw err;
  });
  try {
    progress.update(`uploading the build context (${formatBytes(context.bytes)})…`);
    const body = await fs.openAsBlob(context.file, { type: 'application/x-tar' });
    return unwrap(
      await ctx.api.POST('/v1/images', {
        params: { query: { name } },
        body: body as never,
        bodySerializer: (b: unknown) => b as Blob,
        headers: { 'content-type': 'application/x-tar' },
      }),
    );
  } finally {
    progress.done();
    context.remove();
  }
}

/** Copies the build log to `out` as berth writes it, until the build ends; then the image as it ended. */
async function followBuild(ctx: Context, id: string, out: NodeJS.WritableStream): Promise<Image> {
  const log = unwrap(await ctx.api.GET('/v1/images/{id}/log', { params: { path: { id } }, parseAs: 'stream' })) as unknown as ReadableStream<Uint8Array> | null;
  if (log) {
    for await (const chunk of log as unknown as AsyncIterable<Uint8Array>) out.write(chunk);
  }
  let image = unwrap(await ctx.api.GET('/v1/images/{id}', { params: { path: { id } } }));
  if (image.status !== 'building') return image;
  // The log ended before the build did (a dropped connection): wait for the outcome.
  const progress = startProgress(`${image.name}: still building…`);
  try {
    while (image.status === 'building') {
      await new Promise((r) => setTimeout(r, POLL_MS));
      image = unwrap(await ctx.api.GET('/v1/images/{id}', { params: { path: { id } } }));
    }
  } finally {
    progress.done();
  }
  return image;
}

export function registerImageCommands(program: Command): void {
  const images = withExamples(
    program.command('images').description('images VMs boot from (build, rm: admins)'),
    'berth images                            # the same as berth images list',
    'berth images build ./devbox --name devbox',
    'berth images COMMAND --help',
  );

  withExamples(
    images
      .command('list', { isDefault: true })
      .alias('ls')
      .description('list images')
      .addOption(new Option('--status <status>', 'only images in this state').choices(STATUSES))
      .action(async (opts: { status?: (typeof STATUSES)[number] }, command: Command) => {
        const ctx = Context.of(command);
        const items = await listAll(async (cursor) =>
          unwrap(await ctx.api.GET('/v1/images', { params: { query: { limit: PAGE_SIZE, cursor, ...(opts.status && { status: opts.status }) } } })),
        );
        ctx.print(items, () =>
          items.length
            ? formatTable(
                ['name', 'status', 'size', 'build', 'convert', 'pool', 'created', 'id'],
                items.map((i) => [i.name, i.status, formatBytes(i.size_bytes), formatMs(i.build_ms), formatMs(i.convert_ms), i.pool_size, formatTime(i.created_at), shortId(i.id)]),
              )
            : 'no images',
        );
      }),
    'berth images',
    'berth images list --status failed',
  );

  withExamples(
    images
      .command('build')
      .argument('<path>', 'a directory with a Dockerfile (sent as the build context, minus .dockerignore), or a Dockerfile alone')
      .requiredOption('--name <name>', 'the image name')
      .option('--no-follow', 'return once the build has started, without following its log')
      .description('build an image (admin): upload, follow the build log live, end with its status; exits 1 if the build failed')
      .action(async (source: string, opts: { name: string; follow: boolean }, command: Command) => {
        const ctx = Context.of(command);
        const started = await startBuild(ctx, source, opts.name);
        if (!opts.follow) {
          ctx.print(started, () => `building ${started.name} (${started.id}); follow with: berth images log ${started.name}`);
          return;
        }
        // With --json, stdout carries only the final image: the log goes to stderr.
        const image = await followBuild(ctx, started.id, ctx.json ? process.stderr : process.stdout);
        ctx.print(image, () => imageSummary(image));
        if (image.status !== 'ready') process.exitCode = EXIT.failed;
      }),
    'berth images build ./devbox --name devbox          # ./devbox/Dockerfile and its files',
    'berth images build Dockerfile --name devbox',
    '',
    'FROM names an image the server\'s Docker engine has (no registry is reached), e.g.',
    '  FROM berth/debian-sshd:bookworm',
  );

  withExamples(
    images
      .command('log')
      .argument('<image>', 'the image (name or id)')
      .description('the build log (admin); followed live while the image builds')
      .action(async (ref: string, _opts, command: Command) => {
        const ctx = Context.of(command);
        const image = await followBuild(ctx, (await resolveImage(ctx, ref)).id, ctx.json ? process.stderr : process.stdout);
        if (ctx.json) ctx.print(image, () => undefined);
      }),
    'berth images log devbox',
  );

  withExamples(
    images
      .command('show')
      .argument('<image>', 'the image (name or id)')
      .description("one image's status, sizes and timings (admins also see why a build failed, and its configuration)")
      .action(async (ref: string, _opts, command: Command) => {
        const ctx = Context.of(command);
        const i = await resolveImage(ctx, ref);
        ctx.print(i, () =>
          formatFields([
            ['name', i.name],
            ['id', i.id],
            ['status', i.status],
            ['error', i.error],
            ['size', formatBytes(i.size_bytes)],
            ['build', formatMs(i.build_ms)],
            ['convert', formatMs(i.convert_ms)],
            ['pool size', i.pool_size],
            ['command', i.config ? [...(i.config.entrypoint ?? []), ...(i.config.cmd ?? [])].join(' ') : null],
            ['created', formatTime(i.created_at)],
          ]),
        );
      }),
    'berth images show devbox',
  );

  withExamples(
    images
      .command('rm')
      .alias('delete')
      .argument('<images...>', 'the images (names or ids)')
      .description('delete images (admin); refused while VMs use one')
      .action(async (refs: string[], _opts, command: Command) => {
        const ctx = Context.of(command);
        for (const ref of refs) {
          const image = await resolveImage(ctx, ref);
          unwrap(await ctx.api.DELETE('/v1/images/{id}', { params: { path: { id: image.id } } }));
          ctx.say(`deleted ${image.name}`);
        }
        if (ctx.json) ctx.print({ deleted: refs }, () => undefined);
      }),
    'berth images rm devbox',
  );
}

