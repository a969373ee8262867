/**
 * One-at-a-time per key (a VM): calls on the same key run in the order they came, calls on
 * different keys in parallel. A call that fails does not block the next one.
 */
export class KeyedMutex {
  readonly #tails = new Map<string, Promise<unknown>>();

  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.#tails.get(key) ?? Promise.resolve();
    const run = prev.catch(() => undefined).then(fn);
    this.#tails.set(key, run);
    try {
      return await run;
    } finally {
      // Forget the key once nothing is queued behind this call (keeps the map small).
      if (this.#tails.get(key) === run) this.#tails.delete(key);
    }
  }

  /** Whether a call on `key` is running or waiting. */
  busy(key: string): boolean {
    return this.#tails.has(key);
  }
}
