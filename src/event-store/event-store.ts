import type { VmEvent } from "../contracts/index.js";

export interface StoredEvent {
  event: VmEvent;
  /** Stream sequence: the VM's version once this event is applied. */
  seq: number;
}

/** Persistence of per-VM event streams with optimistic concurrency. */
export interface EventStore {
  /**
   * Appends to the VM's stream if its last event is still `expectedSeq` (0: none yet).
   * Returns the new sequence. Throws `event-store::conflict` (with `details.actual`) when
   * another writer moved the VM on. Re-appending the same eventId is harmless.
   */
  append(event: VmEvent, expectedSeq: number): Promise<number>;
  /** Every event of one VM, oldest first. */
  readVm(host: string, vmId: string): Promise<StoredEvent[]>;
  /**
   * Every event of a host (or all hosts with "*") after `afterSeq`, in one pass. An aborted
   * `signal` ends it early, with the signal's reason.
   */
  replay(
    host: string,
    afterSeq: number,
    onEvent: (e: StoredEvent) => void,
    signal?: AbortSignal,
  ): Promise<{ lastSeq: number; count: number }>;
}
