import { setTimeout as delay } from "node:timers/promises";

/** Sleeps, ending early (with the signal's reason) when the signal aborts. */
export async function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (ms <= 0) {
    signal?.throwIfAborted();
    return;
  }
  await delay(ms, undefined, signal ? { signal } : undefined);
}

/** Exponential backoff with full jitter, capped. attempt starts at 1. */
export function backoffMs(
  attempt: number,
  baseMs = 200,
  capMs = 10_000,
  random = Math.random,
): number {
  const exp = Math.min(capMs, baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(exp / 2 + random() * (exp / 2));
}

/** A signal that aborts at `deadline` or when `parent` aborts. */
export function deadlineSignal(deadline: Date, parent?: AbortSignal): AbortSignal {
  const ms = Math.max(0, deadline.getTime() - Date.now());
  const timeout = AbortSignal.timeout(ms);
  return parent ? AbortSignal.any([timeout, parent]) : timeout;
}
