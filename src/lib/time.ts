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

interface Slot {
  ac: AbortController;
  timer: NodeJS.Timeout;
  refs: number;
  onParent: () => void;
}

/**
 * Abort signals for deadlines, shared by every deadline that falls in the same slot of
 * `slotMs`: one AbortController, timer and parent listener per slot instead of per command
 * (on a fast backend they were a good part of a command's cost). A slot aborts at its end, so
 * a deadline fires at most `slotMs` late; it also aborts, with the parent's reason, when
 * `parent` does. `dispose()` lets go of the slot; the last one out clears it.
 */
export class DeadlineSignals {
  readonly #slots = new Map<number, Slot>();

  constructor(
    private readonly parent?: AbortSignal,
    private readonly slotMs = 100,
  ) {}

  /** Live slots (for tests). */
  get size(): number {
    return this.#slots.size;
  }

  acquire(deadline: Date): { signal: AbortSignal; dispose: () => void } {
    const key = Math.ceil(deadline.getTime() / this.slotMs);
    const slot = this.#slots.get(key) ?? this.#open(key);
    slot.refs++;
    let disposed = false;
    return {
      signal: slot.ac.signal,
      dispose: () => {
        if (disposed) return;
        disposed = true;
        if (--slot.refs === 0) this.#close(key, slot);
      },
    };
  }

  #open(key: number): Slot {
    const { parent } = this;
    const ac = new AbortController();
    // Every command of the slot may listen to it: that is not a leak.
    setMaxListeners(0, ac.signal);
    const slot: Slot = {
      ac,
      refs: 0,
      onParent: () => ac.abort(parent?.reason),
      timer: setTimeout(
        () => ac.abort(new DOMException("the deadline passed", "TimeoutError")),
        Math.max(0, key * this.slotMs - Date.now()),
      ),
    };
    if (parent?.aborted) slot.onParent();
    else parent?.addEventListener("abort", slot.onParent, { once: true });
    this.#slots.set(key, slot);
    return slot;
  }

  #close(key: number, slot: Slot): void {
    clearTimeout(slot.timer);
    this.parent?.removeEventListener("abort", slot.onParent);
    this.#slots.delete(key);
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
