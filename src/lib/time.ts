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

/**
 * A signal that aborts at `deadline` or when `parent` aborts; `dispose()` clears the timer and
 * the parent listener once the work is done. One timer and one listener per command, cheaper
 * than AbortSignal.timeout + AbortSignal.any on the hot path.
 */
export function deadlineSignal(
  deadline: Date,
  parent?: AbortSignal,
): { signal: AbortSignal; dispose: () => void } {
  const ac = new AbortController();
  const onParent = (): void => ac.abort(parent?.reason);
  const timer = setTimeout(
    () => ac.abort(new DOMException("the deadline passed", "TimeoutError")),
    Math.max(0, deadline.getTime() - Date.now()),
  );
  if (parent?.aborted) onParent();
  else parent?.addEventListener("abort", onParent, { once: true });
  return {
    signal: ac.signal,
    dispose: () => {
      clearTimeout(timer);
      parent?.removeEventListener("abort", onParent);
    },
  };
}

/**
 * The promise's value, or undefined as soon as `signal` aborts: for a JetStream fetch that may
 * never settle (its ordered consumer being re-created). A batch that arrives late is stopped.
 */
export async function untilAborted<T extends { stop(): void }>(
  p: Promise<T>,
  signal: AbortSignal | undefined,
): Promise<T | undefined> {
  if (!signal) return p;
  const late = () => {
    // A fetch that completes after the abort: stop it so it does not hold messages.
    p.then(
      (b) => b.stop(),
      () => undefined,
    );
    return undefined;
  };
  if (signal.aborted) return late();
  let onAbort: (() => void) | undefined;
  const aborted = new Promise<"aborted">((resolve) => {
    onAbort = () => resolve("aborted");
    signal.addEventListener("abort", onAbort, { once: true });
  });
  try {
    const r = await Promise.race([p, aborted]);
    return r === "aborted" ? late() : r;
  } finally {
    if (onAbort) signal.removeEventListener("abort", onAbort);
  }
}
