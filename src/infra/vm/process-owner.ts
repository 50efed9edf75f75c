// Which process made a piece of work on disk, and whether that process still lives: its pid
// and its start time (in clock ticks since boot, /proc/PID/stat), so that a pid reused by
// another process after a crash does not pass for the owner. Written into the names of
// directories a berth process works in (template.ts), read back by whoever sweeps them.
import fs from 'node:fs/promises';

/** The start time of `pid`, or null if there is no such process. */
async function startTimeOf(pid: number): Promise<string | null> {
  try {
    const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces and parentheses); starttime is the 22nd field.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}

let own: Promise<string> | undefined;

/** This process's tag: `<pid>.<start time>`. */
export function ownerTag(): Promise<string> {
  own ??= startTimeOf(process.pid).then((start) => `${process.pid}.${start ?? 0}`);
  return own;
}

/** The tag at the end of `name` (`...-<pid>.<start>` or `...-<pid>.<start>-<suffix>`), if any. */
export function tagIn(name: string): string | null {
  return /-(\d+\.\d+)(?:-[^-]*)?$/.exec(name)?.[1] ?? null;
}

/** Whether the process tagged `tag` is alive (the same pid, started at the same time). */
export async function ownerAlive(tag: string): Promise<boolean> {
  const [pid, start] = tag.split('.');
  return (await startTimeOf(Number(pid))) === start;
}
