/**
 * The default of WORKERS: the cores this container may use. `os.availableParallelism()` (the
 * CPU affinity mask), bounded by the cgroup CPU quota when one is set (a Kubernetes CPU limit
 * shows up there, not in the affinity mask).
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';

/** CPU quota in cores from cgroup v2 `cpu.max` or v1 `cpu.cfs_quota_us`/`cpu.cfs_period_us`; undefined when unlimited or unreadable. */
export function cgroupCpuQuota(read: (path: string) => string = (p) => readFileSync(p, 'utf8')): number | undefined {
  try {
    const [quota, period] = read('/sys/fs/cgroup/cpu.max').trim().split(/\s+/);
    if (quota === 'max') return undefined;
    const q = Number(quota);
    const p = Number(period);
    if (q > 0 && p > 0) return q / p;
  } catch {
    /* not cgroup v2 */
  }
  try {
    const q = Number(read('/sys/fs/cgroup/cpu/cpu.cfs_quota_us').trim());
    const p = Number(read('/sys/fs/cgroup/cpu/cpu.cfs_period_us').trim());
    if (q > 0 && p > 0) return q / p;
  } catch {
    /* no cgroup v1 cpu controller either */
  }
  return undefined;
}

/** min(availableParallelism, ceil(cgroup quota)), at least 1. */
export function defaultWorkers(parallelism = availableParallelism(), quota = cgroupCpuQuota()): number {
  const n = quota === undefined ? parallelism : Math.min(parallelism, Math.ceil(quota));
  return Math.max(1, n);
}
