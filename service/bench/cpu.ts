/** CPU time of processes (Linux /proc), for the benches' CPU-per-request figures. */
import { readFileSync, readdirSync } from 'node:fs';

/** utime + stime of a process (all its threads), in seconds. */
export function cpuSeconds(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(rest[11]) + Number(rest[12])) / 100; // fields 14 and 15, in clock ticks (USER_HZ = 100)
}

/** A process and its children (the service's cluster primary and its workers). */
export function processTree(pid: number): number[] {
  const out = [pid];
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    const kids = readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim();
    if (kids) for (const k of kids.split(' ')) out.push(Number(k));
  }
  return out;
}

/** Summed CPU seconds of `pids` (a process that has exited counts 0). */
export function treeCpuSeconds(pids: number[]): number {
  let s = 0;
  for (const p of pids) {
    try {
      s += cpuSeconds(p);
    } catch {
      /* exited */
    }
  }
  return s;
}
