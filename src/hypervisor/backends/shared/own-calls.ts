/**
 * "Was this change ours?", answered the same way by every backend that observes changes.
 * A change seen while one of our calls on the VM runs is that call's effect (the call reports
 * it, as its outcome); so is an effect a call announced that lands after it returns (Propolis's
 * halt sequence runs on after Stop is answered), until it lands or the VM starts afresh.
 * Anything else happened behind our back and is reported through watch.
 */
export class OwnCalls {
  readonly #running = new Map<string, number>();
  readonly #expected = new Map<string, Set<string>>();

  /** Runs one of our calls on vmId (start, stop, suspend, resume, destroy, ...). */
  async run<T>(vmId: string, fn: () => Promise<T>): Promise<T> {
    this.#running.set(vmId, (this.#running.get(vmId) ?? 0) + 1);
    try {
      return await fn();
    } finally {
      const n = (this.#running.get(vmId) ?? 1) - 1;
      if (n > 0) this.#running.set(vmId, n);
      else this.#running.delete(vmId);
    }
  }

  /** An effect of our call that will show after the call returns (e.g. "halt"). */
  expect(vmId: string, effect: string): void {
    const s = this.#expected.get(vmId) ?? new Set<string>();
    s.add(effect);
    this.#expected.set(vmId, s);
  }

  /** The effect landed, or the VM began a new run: nothing (or not `effect`) is pending. */
  settle(vmId: string, effect?: string): void {
    if (effect === undefined) this.#expected.delete(vmId);
    else this.#expected.get(vmId)?.delete(effect);
  }

  /** Whether a change of vmId seen now is ours: a call runs, or it is the `effect` expected. */
  isOurs(vmId: string, effect?: string): boolean {
    if ((this.#running.get(vmId) ?? 0) > 0) return true;
    return effect !== undefined && (this.#expected.get(vmId)?.has(effect) ?? false);
  }
}
