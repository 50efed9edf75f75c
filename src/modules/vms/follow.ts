// Following a boot: from QEMU's start until SSH answers with the VM's pinned host key (the
// VM is `running` and its machine rejoins the pool), or QEMU dies, or sshd fails, or time
// runs out (the VM is `failed`, its machine offline). The guest's init says on the serial
// console when sshd is up; the console is read only where it grew since the last look. A
// restored clone said so already, on its identity channel, before its port was forwarded.
// Either end is raised as `vm.changed` (booted, failed) once recorded.
import path from 'node:path';
import type { EventBus } from '../../events/bus.js';
import { setTimeout as sleep } from 'node:timers/promises';
import type { PrismaClient, Vm } from '../../generated/prisma/client.js';
import { HostKeyMismatchError, sshProveHostKey } from '../../infra/ssh.js';
import { LogScanner, readTail } from '../../infra/vm/console-log.js';
import { GUEST_SAYS } from '../../infra/vm/guest-init.js';
import { runningPid, stopVm } from '../../infra/vm/qemu.js';
import type { MachineState } from '../machines/state.js';
import { localAddress, type VmLimits, type VmRow, type VmsLog } from './model.js';

const SSH_POLL_MS = 200;

export interface BootFollowerDeps {
  prisma: PrismaClient;
  state: Pick<MachineState, 'returnVm' | 'vmFailed'>;
  limits: Pick<VmLimits, 'bootTimeoutMs'>;
  /** The address VMs' SSH ports are bound on (BERTH_VM_BIND). */
  bind: string;
  /** A VM's directory (overlay, seed, console log, pid file). */
  vmDir(id: string): string;
  events: Pick<EventBus, 'raise'>;
  log: VmsLog;
}

export function createBootFollower({ prisma, state, limits, bind, vmDir, events, log }: BootFollowerDeps) {
  /** Boots this process is following. */
  const following = new Map<string, AbortController>();
  let closed = false;
  const consolePath = (id: string) => path.join(vmDir(id), 'console.log');

  /** The last lines QEMU's serial console got, for failure reasons (admins see them). */
  async function consoleTail(id: string, lines = 3): Promise<string> {
    const text = (await readTail(consolePath(id), 4096)).trim();
    return text ? ` (console: ${text.split('\n').slice(-lines).join(' | ').slice(-300)})` : '';
  }

  /** The boot (the one that was read) failed: the VM and its machine say so, reserved or not. */
  async function markFailed(vm: Pick<Vm, 'id' | 'name' | 'machineId' | 'bootStartedAt'>, reason: string): Promise<void> {
    const { count } = await prisma.vm.updateMany({
      where: { id: vm.id, state: { in: ['booting', 'running'] }, bootStartedAt: vm.bootStartedAt },
      data: { state: 'failed', stateReason: reason.slice(0, 1024), pid: null },
    });
    if (count === 0) return;
    log.warn({ vm: vm.id, reason }, 'a VM failed');
    await events.raise('vm.changed', { vmId: vm.id, machineId: vm.machineId, name: vm.name, change: 'failed', state: 'failed' });
    // A reservation keeps its claim, and its release resets the VM.
    if (vm.machineId) await state.vmFailed(vm.machineId, reason);
  }

  async function markRunning(vm: Pick<Vm, 'id' | 'name' | 'machineId' | 'bootStartedAt'>): Promise<void> {
    const bootMs = vm.bootStartedAt ? Date.now() - vm.bootStartedAt.getTime() : null;
    const { count } = await prisma.vm.updateMany({
      where: { id: vm.id, state: 'booting', bootStartedAt: vm.bootStartedAt },
      data: { state: 'running', bootMs },
    });
    if (count === 0) return;
    await events.raise('vm.changed', { vmId: vm.id, machineId: vm.machineId, name: vm.name, change: 'booted', state: 'running' });
    if (vm.machineId) await state.returnVm(vm.machineId);
  }

  /**
   * Whether SSH answers with the VM's pinned host key: a key exchange, in which its sshd
   * signs with that key (so the VM has its identity: the key and root's key are applied
   * together, before sshd may answer). No login: the first one into a fresh guest costs
   * ~0.15 s more under TCG, and proves nothing more. Throws HostKeyMismatchError for an impostor.
   */
  async function sshAnswers(vm: VmRow): Promise<boolean> {
    try {
      await sshProveHostKey({ host: localAddress(bind), port: vm.sshPort, hostKeyFingerprint: vm.hostKeyFingerprint }, 5000);
      return true;
    } catch (err) {
      if (err instanceof HostKeyMismatchError) throw err;
      return false;
    }
  }

  /** `sshdListening`: the start proved it already (a restore); else the console is watched for it. */
  async function follow(vm: VmRow, opts: { sshdListening?: boolean } = {}): Promise<void> {
    if (closed || (following.has(vm.id) && !following.get(vm.id)!.signal.aborted)) return;
    const abort = new AbortController();
    following.set(vm.id, abort);
    const dir = vmDir(vm.id);
    const deadline = (vm.bootStartedAt?.getTime() ?? Date.now()) + limits.bootTimeoutMs;
    const consoleScan = new LogScanner(consolePath(vm.id));
    let sshdStarted = opts.sshdListening ?? false;
    try {
      while (!abort.signal.aborted) {
        if ((await runningPid(dir)) === null) return await markFailed(vm, `QEMU exited while booting${await consoleTail(vm.id)}`);
        if (Date.now() > deadline) {
          await stopVm(dir);
          return await markFailed(vm, `no SSH within ${Math.round(limits.bootTimeoutMs / 1000)} s of boot${await consoleTail(vm.id)}`);
        }
        // Our init says when sshd is up; knocking earlier only costs the guest CPU.
        const text = await consoleScan.next();
        if (text.includes(GUEST_SAYS.sshdFailed)) {
          await stopVm(dir, 0);
          return await markFailed(vm, `sshd did not start in the VM${await consoleTail(vm.id, 4)}`);
        }
        sshdStarted ||= text.includes(GUEST_SAYS.sshd);
        if (sshdStarted) {
          try {
            if (await sshAnswers(vm)) return await markRunning(vm);
          } catch (err) {
            await stopVm(dir);
            return await markFailed(vm, `something else answers on its SSH port: ${(err as Error).message}`);
          }
        }
        await sleep(SSH_POLL_MS);
      }
    } finally {
      if (following.get(vm.id) === abort) following.delete(vm.id);
    }
  }

  return {
    /** Follows `vm`'s boot unless this process follows it already. */
    follow,
    markFailed,
    consoleTail,
    consolePath,
    /** Stops following `id` (it is being stopped, relaunched or deleted). */
    abort: (id: string) => following.get(id)?.abort(),
    /** Stops following every boot (the VMs keep booting; the next process re-adopts them). */
    close(): void {
      closed = true;
      for (const abort of following.values()) abort.abort();
    },
  };
}

export type BootFollower = ReturnType<typeof createBootFollower>;
