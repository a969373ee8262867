/**
 * What this client wrote: for each VM, the host and the events-stream sequence of the newest
 * outcome it saw. Reads wait for the view to reach it (read-your-writes). Bounded: the oldest
 * entries go first, so a long-lived scheduler does not grow without end.
 */
export class OwnWrites {
  readonly #byVm = new Map<string, { host: string; seq: number }>();
  #last = 0;

  constructor(private readonly max = 10_000) {}

  /** Remembers a sequence seen for the VM (only ever moves forward). */
  saw(vmId: string, host: string, seq: number): void {
    const had = this.#byVm.get(vmId);
    if (had && had.seq >= seq) return;
    this.#byVm.delete(vmId); // re-inserted last: the map's order is the age
    this.#byVm.set(vmId, { host, seq });
    if (seq > this.#last) this.#last = seq;
    if (this.#byVm.size > this.max) {
      const oldest = this.#byVm.keys().next().value;
      if (oldest !== undefined) this.#byVm.delete(oldest);
    }
  }

  of(vmId: string): { host: string; seq: number } | undefined {
    return this.#byVm.get(vmId);
  }

  /** The newest sequence this client saw for any VM. */
  get lastSeq(): number {
    return this.#last;
  }

  entries(): IterableIterator<[string, { host: string; seq: number }]> {
    return this.#byVm.entries();
  }
}
