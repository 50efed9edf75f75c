// berth vms: the VMs berth boots from images (list: everyone; the rest: admins).
import { unwrap, type components } from '@berth/client';
import { Option, type Command } from 'commander';
import { Context } from '../context.js';
import { withExamples } from '../help.js';
import { listAll, PAGE_SIZE } from '../http/lists.js';
import { formatMs } from '../output/format.js';
import { startProgress } from '../output/progress.js';
import { formatTable } from '../output/table.js';
import { resolveVmId } from '../resolve.js';

type Vm = components['schemas']['Vm'];
const STATES = ['booting', 'running', 'stopped', 'failed'] as const;

export const vmsTable = (vms: Vm[]) =>
  formatTable(
    ['name', 'image', 'state', 'machine', 'ssh', 'boot', 'cpus', 'memory', 'reason'],
    vms.map((v) => [v.name, v.image.name, v.state, v.machine_status, `${v.ssh.host}:${v.ssh.port}`, formatMs(v.boot_ms), v.cpus, `${v.memory_mb} MiB`, v.state_reason]),
  );

const ACTIONS = {
  reset: { path: '/v1/vms/{id}/reset', done: 'reset', help: 'discard the writable layer and boot clean' },
  stop: { path: '/v1/vms/{id}/stop', done: 'stopped', help: 'stop (the writable layer is kept)' },
  start: { path: '/v1/vms/{id}/start', done: 'started', help: 'start a stopped or failed VM' },
} as const;

export function registerVmCommands(program: Command): void {
  const vms = withExamples(
    program.command('vms').description('the VMs booted from images (reset, stop, start, rm, console: admins)'),
    'berth vms                               # the same as berth vms list',
    'berth vms reset devbox-3f9a1c',
    'berth vms console devbox-3f9a1c',
  );

  withExamples(
    vms
      .command('list', { isDefault: true })
      .alias('ls')
      .description('list VMs')
      .option('--image <image>', 'only VMs of this image (name or id)')
      .addOption(new Option('--state <state>', 'only VMs in this state').choices(STATES))
      .action(async (opts: { image?: string; state?: (typeof STATES)[number] }, command: Command) => {
        const ctx = Context.of(command);
        const items = await listAll(async (cursor) =>
          unwrap(
            await ctx.api.GET('/v1/vms', {
              params: { query: { limit: PAGE_SIZE, cursor, ...(opts.image && { image: opts.image }), ...(opts.state && { state: opts.state }) } },
            }),
          ),
        );
        ctx.print(items, () => (items.length ? vmsTable(items) : 'no VMs'));
      }),
    'berth vms',
    'berth vms list --image devbox --state running',
  );

  for (const [name, action] of Object.entries(ACTIONS)) {
    withExamples(
      vms
        .command(name)
        .argument('<vms...>', 'the VMs (names or ids)')
        .description(`${action.help} (admin)`)
        .action(async (refs: string[], _opts, command: Command) => {
          const ctx = Context.of(command);
          const done: Vm[] = [];
          const progress = startProgress(`${name}…`);
          try {
            for (const ref of refs) {
              const id = await resolveVmId(ctx, ref);
              done.push(unwrap(await ctx.api.POST(action.path, { params: { path: { id } } })) as Vm);
            }
          } finally {
            progress.done();
          }
          ctx.print(done, () => done.map((v) => `${v.name} ${action.done} (${v.state})`).join('\n'));
        }),
      `berth vms ${name} devbox-3f9a1c`,
    );
  }

  withExamples(
    vms
      .command('rm')
      .alias('delete')
      .argument('<vms...>', 'the VMs (names or ids)')
      .description('delete VMs (admin); a reserved VM is refused')
      .action(async (refs: string[], _opts, command: Command) => {
        const ctx = Context.of(command);
        for (const ref of refs) {
          unwrap(await ctx.api.DELETE('/v1/vms/{id}', { params: { path: { id: await resolveVmId(ctx, ref) } } }));
          ctx.say(`deleted ${ref}`);
        }
        if (ctx.json) ctx.print({ deleted: refs }, () => undefined);
      }),
    'berth vms rm devbox-3f9a1c',
  );

  withExamples(
    vms
      .command('console')
      .argument('<vm>', 'the VM (name or id)')
      .description("the VM's serial console since its last boot (admin; the last 256 KiB)")
      .action(async (ref: string, _opts, command: Command) => {
        const ctx = Context.of(command);
        const id = await resolveVmId(ctx, ref);
        const text = unwrap(await ctx.api.GET('/v1/vms/{id}/console', { params: { path: { id } }, parseAs: 'text' })) as string;
        if (ctx.json) ctx.print({ id, console: text }, () => undefined);
        else process.stdout.write(text);
      }),
    'berth vms console devbox-3f9a1c | tail -20',
  );
}
