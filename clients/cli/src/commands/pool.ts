// berth pool: how many machines are free, and (admin) how many VMs of an image the pool keeps.
import { unwrap, type components } from '@berth/client';
import { Option, type Command } from 'commander';
import { Context } from '../context.js';
import { CliError, EXIT } from '../errors.js';
import { withExamples } from '../help.js';
import { listAll, PAGE_SIZE } from '../http/lists.js';
import { parseDurationMinutes, parseNonNegative } from '../input/values.js';
import { startProgress } from '../output/progress.js';
import { formatTable } from '../output/table.js';
import { resolveImage } from '../resolve.js';
import { vmsTable } from './vms.js';

type Vm = components['schemas']['Vm'];
const POLL_MS = 1000;

/** Waits until the image has exactly `size` VMs, all running; a VM that fails or stops ends the wait. */
async function waitForPool(ctx: Context, image: { id: string; name: string }, size: number, timeoutMinutes: number): Promise<Vm[]> {
  const progress = startProgress(`${image.name}: waiting for ${size} VM${size === 1 ? '' : 's'}…`);
  const deadline = Date.now() + timeoutMinutes * 60_000;
  try {
    for (;;) {
      const vms = await listAll(async (cursor) => unwrap(await ctx.api.GET('/v1/vms', { params: { query: { image: image.id, limit: PAGE_SIZE, cursor } } })));
      const count = (state: Vm['state']) => vms.filter((v) => v.state === state).length;
      progress.update(`${image.name}: ${count('running')}/${size} running, ${count('booting')} booting`);
      if (vms.length === size && count('running') === size) return vms;
      const stuck = vms.filter((v) => v.state === 'failed' || v.state === 'stopped');
      if (stuck.length) {
        const which = stuck.map((v) => `${v.name} ${v.state}${v.state_reason ? ` (${v.state_reason})` : ''}`).join('; ');
        throw new CliError(`${image.name}: ${stuck.length} of ${size} VMs will not run: ${which}`, EXIT.failed);
      }
      if (Date.now() > deadline) {
        throw new CliError(`${image.name}: ${count('running')} of ${size} VMs running after ${timeoutMinutes} min; see berth vms --image ${image.name}`, EXIT.failed);
      }
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  } finally {
    progress.done();
  }
}

export function registerPoolCommands(program: Command): void {
  const pool = withExamples(
    program.command('pool').description('free and busy machines by type; VM pools of images (set: admin)'),
    'berth pool                              # the same as berth pool show',
    'berth pool set devbox 3                 # admin',
  );

  withExamples(
    pool
      .command('show', { isDefault: true })
      .description('how many machines are available, reserved, in maintenance, offline, waiting to be reprovisioned')
      .action(async (_opts, command: Command) => {
        const ctx = Context.of(command);
        const p = unwrap(await ctx.api.GET('/v1/pool'));
        ctx.print(p, () =>
          formatTable(
            ['type', 'total', 'available', 'reserved', 'maintenance', 'offline', 'reprovision'],
            [
              ...Object.entries(p.by_type).map(([type, t]) => [type, t.total, t.available, t.reserved, t.maintenance, t.offline, t.needs_reprovision]),
              ['(all)', p.total, p.available, p.reserved, p.maintenance, p.offline, p.needs_reprovision],
            ],
          ),
        );
      }),
    'berth pool',
    'berth pool show --json',
  );

  withExamples(
    pool
      .command('set')
      .argument('<image>', 'the image (name or id)')
      .argument('<size>', 'how many VMs of it the pool keeps (0 removes them)', parseNonNegative)
      .option('--no-wait', 'return at once instead of waiting for the VMs to run')
      .addOption(new Option('--timeout <duration>', 'give up waiting after this long').argParser(parseDurationMinutes).default(20, '20m'))
      .description('keep exactly SIZE VMs of an image in the pool (admin), and wait until they run; exits 1 if one fails')
      .action(async (imageRef: string, size: number, opts: { wait: boolean; timeout: number }, command: Command) => {
        const ctx = Context.of(command);
        const image = await resolveImage(ctx, imageRef);
        const set = unwrap(await ctx.api.PUT('/v1/images/{id}/pool', { params: { path: { id: image.id } }, body: { size } }));
        const vms = opts.wait ? await waitForPool(ctx, image, size, opts.timeout) : set.vms;
        const state = !opts.wait ? 'set' : size === 0 ? 'emptied' : 'all running';
        ctx.print({ ...set, vms }, () => `${image.name}: pool of ${size}, ${state}${vms.length ? `\n${vmsTable(vms)}` : ''}`);
      }),
    'berth pool set devbox 3',
    'berth pool set devbox 0 --no-wait',
  );
}
