/**
 * The time of a stop or destroy, as one schedule, so that a stop interrupted by a worker crash
 * still escalates when its redelivery resumes it:
 *
 *   accepted ── graceful window (timeoutMs) ── SIGTERM, grace ── SIGKILL, wait ── margin
 *            └─ crash allowance (one ack_wait: how late a dead worker's command comes back)
 *
 * The deadline recorded with the intent is `acceptedAt + timeoutMs + escalation + allowance`.
 * A run of the command (first or resumed) gets what is left of the graceful window, counted
 * from acceptance, never more than the deadline allows after the escalation steps; with less
 * than the escalation's time left (a redelivery later than the allowance) the steps shrink in
 * proportion, so SIGKILL still comes before the deadline.
 */

/** The steps after the graceful window, at most this long each. */
export const STOP_ESCALATION = {
  /** SIGTERM sent: how long QEMU (or the backend's equivalent) may take to exit. */
  sigtermGraceMs: 5_000,
  /** SIGKILL sent: how long to wait for the process to be gone. */
  sigkillWaitMs: 5_000,
  /** Asking the backend, recording the outcome. */
  marginMs: 5_000,
} as const;

/** Escalation after a stop timeout (SIGTERM, then SIGKILL) and recording it. */
export const STOP_ESCALATION_MS =
  STOP_ESCALATION.sigtermGraceMs + STOP_ESCALATION.sigkillWaitMs + STOP_ESCALATION.marginMs;

/** The deadline of a stop or destroy accepted at `acceptedAt` (epoch ms). */
export function stopDeadline(acceptedAt: number, timeoutMs: number, crashAllowanceMs = 0): number {
  return acceptedAt + timeoutMs + STOP_ESCALATION_MS + Math.max(0, crashAllowanceMs);
}

export interface StopTiming {
  /** When the intent was recorded (epoch ms): the graceful window counts from here. */
  acceptedAt: number;
  /** The command's graceful window. */
  timeoutMs: number;
  /** The intent's deadline (epoch ms). */
  deadline: number;
  /** This run's start (epoch ms). */
  now: number;
}

/** What one run of a stop or destroy may spend on each step (ms). */
export interface StopPlan {
  /** ACPI power button until the guest is gone; 0: escalate at once. */
  gracefulMs: number;
  sigtermGraceMs: number;
  sigkillWaitMs: number;
}

/**
 * The plan of one run: the rest of the graceful window, capped so that every escalation step
 * still fits before the deadline; the steps in full while they fit, else shrunk in proportion.
 */
export function stopPlan(t: StopTiming): StopPlan {
  const left = Math.max(0, t.deadline - t.now);
  const windowLeft = t.acceptedAt + t.timeoutMs - t.now;
  const gracefulMs = Math.max(0, Math.min(windowLeft, left - STOP_ESCALATION_MS));
  const share = Math.min(1, (left - gracefulMs) / STOP_ESCALATION_MS);
  return {
    gracefulMs,
    sigtermGraceMs: Math.floor(STOP_ESCALATION.sigtermGraceMs * share),
    sigkillWaitMs: Math.floor(STOP_ESCALATION.sigkillWaitMs * share),
  };
}
