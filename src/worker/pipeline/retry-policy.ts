import { backoffMs } from "../../lib/time.js";

/** A backend call of a command failed: what the worker knows then. */
export interface BackendFailure {
  /** The error's `retryable` (from the error-code table). */
  retryable: boolean;
  /** The command's deadline has passed (its signal fired). */
  deadlinePassed: boolean;
  /** This delivery's attempt that failed, from 1. */
  attempt: number;
  maxAttempts: number;
  /** JetStream's delivery count of the message, from 1. */
  delivery: number;
  maxDeliver: number;
  now: number;
  deadline: number;
  /** For the backoff's jitter (tests pass a fixed one). */
  random?: () => number;
}

export type BackendStep =
  /** Try again in this lane after the wait (the VM's order is kept). */
  | { kind: "retry"; waitMs: number }
  /** Back to the stream with this delay, the intent kept: a redelivery resumes it. */
  | { kind: "redeliver"; delayMs: number }
  /** Record vm.command-failed now. */
  | { kind: "fail" };

/** Backoff between attempts inside one delivery. */
const ATTEMPT_BACKOFF = { baseMs: 250, capMs: 5_000 };
/** Backoff between deliveries (nak delays), growing with the delivery count. */
export const DELIVERY_BACKOFF = { baseMs: 1_000, capMs: 30_000 };

/** The delay before the next delivery of a message delivered `delivery` times. */
export const redeliveryDelay = (delivery: number, random?: () => number): number =>
  backoffMs(delivery, DELIVERY_BACKOFF.baseMs, DELIVERY_BACKOFF.capMs, random);

/**
 * After a failed backend call: a transient failure is retried in the lane up to maxAttempts,
 * then sent back to the stream with a growing delay; a permanent failure, the last delivery,
 * a passed deadline, or a retry that would end after the deadline records the failure.
 */
export function afterBackendFailure(f: BackendFailure): BackendStep {
  const lastDelivery = f.delivery >= f.maxDeliver;
  const open = f.retryable && !f.deadlinePassed && !lastDelivery;
  const wait = backoffMs(f.attempt, ATTEMPT_BACKOFF.baseMs, ATTEMPT_BACKOFF.capMs, f.random);
  if (open && f.attempt < f.maxAttempts && f.now + wait < f.deadline)
    return { kind: "retry", waitMs: wait };
  const later = redeliveryDelay(f.delivery, f.random);
  if (open && f.now + later < f.deadline) return { kind: "redeliver", delayMs: later };
  return { kind: "fail" };
}

/** Recording a command failed (NATS trouble, a VM that kept changing): what now. */
export interface RecordingFailure {
  /** A drain gave up on in-flight commands. */
  draining: boolean;
  delivery: number;
  maxDeliver: number;
  random?: () => number;
}

export type RecordingStep =
  /** Straight back to the stream for the next worker of this host (the intent stays recorded). */
  | { kind: "abandon" }
  /** The last delivery: dead-letter it and record its failure. */
  | { kind: "give-up" }
  /** Let JetStream bring it back later. */
  | { kind: "redeliver"; delayMs: number };

export function afterRecordingFailure(f: RecordingFailure): RecordingStep {
  if (f.draining) return { kind: "abandon" };
  if (f.delivery >= f.maxDeliver) return { kind: "give-up" };
  return { kind: "redeliver", delayMs: redeliveryDelay(f.delivery, f.random) };
}
