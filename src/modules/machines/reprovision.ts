// The configured reprovision command (BERTH_REPROVISION_COMMAND), as MAAS and Beaker
// reimage a machine between users: run for each machine that waits in needs_reprovision,
// it returns the machine to the pool when it succeeds; when it fails the machine keeps
// waiting, with the reason, for an admin. It runs as `command name host port`, without a
// shell, with only PATH and what it needs in its environment (never berth's secrets): the
// machine's login user and the public half of berth's login key, to authorize on the fresh
// system so that berth can log in again.
import { createBackgroundWork } from '../../shared/background.js';
import { execFile } from 'node:child_process';
import type { PrismaClient } from '../../generated/prisma/client.js';
import type { SecretBox } from '../../infra/secret-box.js';
import { publicKeyLineOf } from '../../infra/ssh.js';
import type { MachineRow } from './access.js';
import { AWAITING_REPROVISION, REPROVISIONING, type MachineState } from './state.js';

/** What a command may print; more and it is stopped (and failed). */
const OUTPUT_MAX_BYTES = 64 * 1024;
/** A command whose berth process died is run again this long after its own timeout. */
const TAKEOVER_GRACE_MS = 60_000;

export function createReprovisioner(deps: {
  prisma: PrismaClient;
  state: Pick<MachineState, 'reprovisionStarted' | 'reprovisioned' | 'reprovisionFailed' | 'reprovisionInterrupted'>;
  secretBox: SecretBox;
  command: { command: string; timeoutMs: number };
  log: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void; error(obj: object, msg: string): void };
}) {
  const { prisma, state, secretBox, command, log } = deps;
  const abort = new AbortController();
  const running = createBackgroundWork(log);

  function run(m: MachineRow): Promise<void> {
    const publicKey = m.credentialKind === 'private_key' ? publicKeyLineOf(secretBox.open(m.credential)) : null;
    const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', BERTH_LOGIN_USER: m.username, ...(publicKey && { BERTH_LOGIN_PUBLIC_KEY: publicKey }) };
    return new Promise<void>((resolve) => {
      execFile(
        command.command,
        [m.name, m.host, String(m.port)],
        { env, timeout: command.timeoutMs, killSignal: 'SIGKILL', maxBuffer: OUTPUT_MAX_BYTES, signal: abort.signal },
        (err, _stdout, stderr) => {
          void (async () => {
            // berth is stopping: the machine waits again, for another process or this one restarted.
            if (abort.signal.aborted) return void (await state.reprovisionInterrupted(m.id));
            if (!err) {
              if (await state.reprovisioned(m.id)) log.info({ machine: m.name }, 'reprovisioned: back in the pool');
              return;
            }
            const why = `${err.killed ? `stopped after ${command.timeoutMs / 1000} s or ${OUTPUT_MAX_BYTES} bytes of output` : `exit ${String(err.code)}`}: ${String(stderr).trim().slice(-200)}`;
            log.warn({ machine: m.name, err: why }, 'the reprovision command failed; the machine waits for an admin');
            await state.reprovisionFailed(m.id, why);
          })()
            .catch((e: unknown) => log.warn({ machine: m.name, err: (e as Error).message }, 'could not record a reprovision'))
            .finally(resolve);
        },
      );
    });
  }

  return {
    /**
     * Starts the command for each machine that waits for it (or whose run was left by a berth
     * process that died); does not wait for the commands. Returns how many it started.
     */
    async startDue(): Promise<number> {
      if (abort.signal.aborted) return 0;
      const stale = new Date(Date.now() - command.timeoutMs - TAKEOVER_GRACE_MS);
      const due = await prisma.machine.findMany({
        where: {
          status: 'needs_reprovision',
          OR: [{ statusReason: AWAITING_REPROVISION }, { statusReason: REPROVISIONING, lastCheckedAt: { lt: stale } }],
        },
        take: 50,
      });
      let started = 0;
      for (const m of due) {
        if (!(await state.reprovisionStarted(m))) continue;
        running.track(run(m), 'a reprovision command');
        started++;
      }
      return started;
    },

    /** Stops the commands still running (their machines stay waiting) and waits for them. */
    async stop(): Promise<void> {
      abort.abort();
      await running.settled();
    },
  };
}

export type Reprovisioner = ReturnType<typeof createReprovisioner>;
