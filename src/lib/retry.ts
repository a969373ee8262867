import { backoffMs, sleep } from "./time.js";

export interface RetryOptions {
  /** Attempts in all, the first included (default: no limit). */
  attempts?: number;
  /** Backoff between attempts: full jitter over baseMs * 2^(attempt-1), capped at capMs. */
  baseMs: number;
  capMs: number;
  /** Give up once a wait would end this long after the first attempt began. */
  timeoutMs?: number;
  /** Wait before the first attempt too (a restart after a failure, say). */
  waitFirst?: boolean;
  /** Whether this error is worth another attempt (default: every error is). */
  retryIf?: (e: unknown, attempt: number) => boolean | Promise<boolean>;
  /** Ends the waiting with the signal's reason. */
  signal?: AbortSignal;
  /** Told before each wait (for a log line). */
  onRetry?: (e: unknown, attempt: number, waitMs: number) => void;
}

/**
 * The one retry loop of vmq: runs `fn` until it resolves, waiting a growing, jittered time
 * between attempts; rethrows the last error when the error is not retryable, the attempts or
 * the time are used up, and the signal's reason when it aborts. (The command pipeline's own
 * steps, where a retry may also be a redelivery, are the pure policy in
 * worker/pipeline/retry-policy.ts.)
 */
export async function retry<T>(fn: (attempt: number) => Promise<T>, o: RetryOptions): Promise<T> {
  const began = Date.now();
  if (o.waitFirst) await pause(backoffMs(1, o.baseMs, o.capMs), o.signal);
  for (let attempt = 1; ; attempt++) {
    o.signal?.throwIfAborted();
    try {
      return await fn(attempt);
    } catch (e) {
      const wait = backoffMs(attempt + (o.waitFirst ? 1 : 0), o.baseMs, o.capMs);
      const spent = o.attempts !== undefined && attempt >= o.attempts;
      const late = o.timeoutMs !== undefined && Date.now() + wait - began > o.timeoutMs;
      if (spent || late || o.signal?.aborted) throw e;
      if (o.retryIf && !(await o.retryIf(e, attempt))) throw e;
      o.onRetry?.(e, attempt, wait);
      await pause(wait, o.signal);
    }
  }
}

/** A wait that ends with the signal's own reason (sleep's AbortError says less). */
async function pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
  await sleep(ms, signal).catch((e: unknown) => {
    signal?.throwIfAborted();
    throw e;
  });
}

/**
 * Polls `check` every `intervalMs` until it returns a value (not undefined), for at most
 * `timeoutMs`; undefined when the time is up.
 */
export async function waitFor<T>(
  check: () => Promise<T | undefined> | T | undefined,
  o: { intervalMs: number; timeoutMs: number; signal?: AbortSignal },
): Promise<T | undefined> {
  const end = Date.now() + o.timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() + o.intervalMs > end) return undefined;
    await sleep(o.intervalMs, o.signal);
  }
}
