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
   * another writer moved the VM on, and also (with `details.duplicate: true`) when the stream
   * already holds an event with this eventId: the caller decided on a VM that had moved on. A
   * retry inside one append of a publish whose acknowledgement was lost returns its sequence.
   */
  append(event: VmEvent, expectedSeq: number): Promise<number>;
  /**
   * Removes the VM's events up to and including `throughSeq` (later ones stay): the history of
   * a VM compacted to its tombstone. Returns how many went. `seqs`, when the caller knows every
   * sequence the VM's subject holds, removes exactly those (far cheaper for the server than a
   * filtered purge, which costs it several ms each); one already gone is no error.
   */
  purgeVm(
    host: string,
    vmId: string,
    throughSeq: number,
    seqs?: readonly number[],
  ): Promise<number>;
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
