/**
 * The arithmetic of `deploy`, shared by the rules (which refuse what cannot work) and the model
 * (which prints it): how long a pod may take to stop, and how many CPUs a quantity gives.
 */

/** The supervisor's kill grace past the drain timeout (supervisor/core.zig `kill_grace_ms`). */
export const KILL_GRACE_MS = 1000;
/** Seconds on top of every wait, for the kubelet and the runtime themselves. */
export const GRACE_MARGIN_SECONDS = 5;
export const DEFAULT_PRE_STOP_SLEEP_SECONDS = 5;

/**
 * Seconds from the kubelet's decision to stop a pod to the supervisor's last possible exit: the
 * preStop sleep, then (after SIGTERM) the shutdown delay, the drain, the kill grace, a margin.
 */
export function graceSeconds(
  preStopSleepSeconds: number,
  shutdownDelayMs: number,
  drainTimeoutMs: number,
): number {
  const afterTerm = Math.ceil((shutdownDelayMs + drainTimeoutMs + KILL_GRACE_MS) / 1000);
  return preStopSleepSeconds + afterTerm + GRACE_MARGIN_SECONDS;
}

/** The cores a CPU quantity ("2", "0.5", "1500m") stands for. */
export function cpuCores(quantity: string): number {
  return quantity.endsWith("m") ? Number(quantity.slice(0, -1)) / 1000 : Number(quantity);
}

/** The workers `"auto"` starts under a CPU limit: the quota rounded up, at least 1 (cpus.zig). */
export function workersUnderLimit(quantity: string): number {
  return Math.max(1, Math.ceil(cpuCores(quantity) - 1e-9));
}
