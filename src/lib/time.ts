import { setMaxListeners } from "node:events";
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

const passed = (): DOMException => new DOMException("the deadline passed", "TimeoutError");

interface Slot {
  ac: AbortController;
  timer: NodeJS.Timeout;
  refs: number;
  /** When the last holder let go (while refs is 0). */
  idleSince: number;
}

/**
 * Abort signals for deadlines, shared by every deadline that falls in the same slot of
 * `slotMs`: one AbortController and timer per slot instead of per command (on a fast backend
 * they were a good part of a command's cost). A slot aborts at its end, so a deadline fires at
 * most `slotMs` late; every live slot also aborts, with the parent's reason, when `parent`
 * does (one listener for all of them).
 *
 * A slot nobody holds lingers for `lingerMs` to twice that (one sweep per `lingerMs`) before
 * it is cleared: a fast backend's calls rarely overlap, and clearing a slot as soon as its last
 * holder let go made a new AbortController per call again. Timers do not keep the process
 * alive. A deadline already past gets a signal that has already aborted.
 */
export class DeadlineSignals {
  readonly #slots = new Map<number, Slot>();
  #sweeper: NodeJS.Timeout | undefined;

  constructor(
    private readonly parent?: AbortSignal,
    private readonly slotMs = 100,
    private readonly lingerMs = 1_000,
  ) {
    parent?.addEventListener("abort", () => this.#abortAll(), { once: true });
  }

  /** Live slots (for tests). */
  get size(): number {
    return this.#slots.size;
  }

  acquire(deadline: Date): { signal: AbortSignal; dispose: () => void } {
    // Not a new slot that aborts on the next tick: a call must not start in between.
    if (deadline.getTime() <= Date.now())
      return { signal: AbortSignal.abort(passed()), dispose: () => undefined };
    const key = Math.ceil(deadline.getTime() / this.slotMs);
    const slot = this.#slots.get(key) ?? this.#open(key);
    slot.refs++;
    let disposed = false;
    return {
      signal: slot.ac.signal,
      dispose: () => {
        if (disposed) return;
        disposed = true;
        if (--slot.refs === 0) slot.idleSince = Date.now();
      },
    };
  }

  #open(key: number): Slot {
    const ac = new AbortController();
    // Every command of the slot may listen to it: that is not a leak.
    setMaxListeners(0, ac.signal);
    const timer = setTimeout(
      () => {
        this.#slots.delete(key);
        ac.abort(passed());
      },
      Math.max(0, key * this.slotMs - Date.now()),
    );
    timer.unref();
    const slot: Slot = { ac, refs: 0, timer, idleSince: 0 };
    if (this.parent?.aborted) {
      clearTimeout(timer);
      ac.abort(this.parent.reason);
      return slot;
    }
    this.#slots.set(key, slot);
    this.#sweeper ??= setInterval(() => this.#sweep(), this.lingerMs).unref();
    return slot;
  }

  /** Clears the slots nobody has held for `lingerMs`. */
  #sweep(): void {
    const before = Date.now() - this.lingerMs;
    for (const [key, slot] of this.#slots) {
      if (slot.refs === 0 && slot.idleSince <= before) {
        clearTimeout(slot.timer);
        this.#slots.delete(key);
      }
    }
    if (this.#slots.size === 0) {
      clearInterval(this.#sweeper);
      this.#sweeper = undefined;
    }
  }

  #abortAll(): void {
    for (const slot of this.#slots.values()) {
      clearTimeout(slot.timer);
      slot.ac.abort(this.parent?.reason);
    }
    this.#slots.clear();
    clearInterval(this.#sweeper);
    this.#sweeper = undefined;
  }
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
