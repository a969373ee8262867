import type { VmEvent } from "../../contracts/index.js";
import type { VmTombstone } from "../../contracts/index.js";
import { emptyVm, evolve, tombstonedEvent, vmFromTombstone, type Vm } from "../../domain/index.js";
import type { EventStore } from "../../event-store/event-store.js";
import { isValidId } from "../../contracts/index.js";
import { isVmqError, VmqError } from "../../lib/errors.js";
import type { Logger } from "../../observability/logger.js";
import type { Tombstones } from "../ports.js";

/** Rounds of decide-append before a VM that keeps changing is given up on. */
const MAX_ROUNDS = 8;
/** Tombstone look-ups started ahead of a VM's lane; more are not started (a burst of new VMs). */
const MAX_PREFETCH = 4_096;
/** A look-up older than this is not trusted: its VM's command did not come (bad input, say). */
const PREFETCH_FRESH_MS = 10_000;
/** A VM with more events than this keeps no list of them (its compaction purges by subject). */
const MAX_KNOWN_SEQS = 64;

/** Decides the event to append to a VM at its current state, or nothing. */
export type Decide = (vm: Vm) => VmEvent | undefined | Promise<VmEvent | undefined>;

export interface Updated {
  /** The VM after the update (as it was when nothing was appended). */
  vm: Vm;
  /** What was appended, if anything. */
  event: VmEvent | undefined;
}

/** How a VM in the cache changed: a new event, a replayed one, or a reload from its stream. */
export type Change = "appended" | "replayed" | "reloaded" | "forgotten";

/** What the rest of the worker may read of the cache. */
export interface VmReader {
  readonly size: number;
  readonly lastSeq: number;
  get(vmId: string): Vm;
  has(vmId: string): boolean;
  all(): Vm[];
}

/**
 * The host's VMs, folded from their event streams, and the one way to change them: update()
 * reads the VM, asks `decide` for an event, appends it with the VM's version as the expected
 * sequence, and on a conflict (another writer moved the VM on) reloads the VM from its stream
 * and decides again (emmett's command handler). Nothing else writes events or the cache.
 */
export class VmStreams implements VmReader {
  readonly #vms = new Map<string, Vm>();
  readonly #listeners: ((vmId: string, change: Change) => void)[] = [];
  /** VMs known from their tombstone whose subject does not hold it yet (see #revive). */
  readonly #revived = new Map<string, VmTombstone>();
  /** Tombstone look-ups of uncached VMs started when their command was queued (see prefetch). */
  readonly #prefetched = new Map<
    string,
    { at: number; tombstone: Promise<VmTombstone | undefined> }
  >();
  /**
   * Every sequence its subject holds, for VMs whose whole history this worker read or wrote:
   * the compactor deletes exactly those instead of a filtered purge. Absent: not known (a VM
   * from a snapshot, or one with a long history), and the compactor purges by subject.
   */
  readonly #seqs = new Map<string, number[]>();
  /** Replaying after a snapshot: a VM first seen now may have events before it (not known). */
  #partialReplay = false;
  #lastSeq = 0;
  readonly #log: Logger;
  readonly #onConflict: () => void;
  readonly #tombstones: Tombstones | undefined;

  constructor(
    readonly host: string,
    private readonly store: EventStore,
    opts: {
      log: Logger;
      /** Told of every conflict (a metric). */
      onConflict?: () => void;
      /** Where compacted VMs are remembered: a VM not in the cache is looked up there first. */
      tombstones?: Tombstones | undefined;
    },
  ) {
    this.#log = opts.log;
    this.#onConflict = opts.onConflict ?? (() => undefined);
    this.#tombstones = opts.tombstones;
  }

  get size(): number {
    return this.#vms.size;
  }
  /** The highest stream sequence applied. */
  get lastSeq(): number {
    return this.#lastSeq;
  }
  get(vmId: string): Vm {
    return this.#vms.get(vmId) ?? emptyVm(vmId, this.host);
  }
  has(vmId: string): boolean {
    return this.#vms.has(vmId);
  }
  all(): Vm[] {
    return [...this.#vms.values()];
  }
  ids(): IterableIterator<string> {
    return this.#vms.keys();
  }
  /** Every sequence the VM's subject holds, when this worker knows them all (see #seqs). */
  eventSeqs(vmId: string): readonly number[] | undefined {
    return this.#seqs.get(vmId);
  }

  /** Called after every change of a VM in the cache (the view and the snapshots follow it). */
  onChange(listener: (vmId: string, change: Change) => void): void {
    this.#listeners.push(listener);
  }

  async update(vmId: string, decide: Decide): Promise<Updated> {
    // A VM this worker does not hold may have been compacted: decide on what is left of it.
    if (!this.#vms.has(vmId)) await this.#revive(vmId);
    for (let round = 0; round < MAX_ROUNDS; round++) {
      const vm = this.get(vmId);
      const event = await decide(vm);
      if (!event) return { vm, event };
      try {
        // Only a VM revived from its tombstone has one to restore: no await on the hot path.
        const base = this.#revived.has(vmId) ? await this.#restoreTombstone(vm) : vm;
        const seq = await this.store.append(event, base.version);
        return { vm: this.#apply(event, seq, "appended"), event };
      } catch (e) {
        if (!isVmqError(e, "event-store::conflict")) throw e;
        this.#onConflict();
        this.#log.warn(
          { vmId, details: e.details },
          "another writer touched the VM: reloading and deciding again",
        );
        await this.reload(vmId);
      }
    }
    throw new VmqError("event-store::conflict", `VM ${vmId} kept changing under this update`);
  }

  /** Rebuilds one VM from its stream (after a conflict, or before trusting the cache). */
  async reload(vmId: string): Promise<Vm> {
    const history = await this.store.readVm(this.host, vmId);
    this.#revived.delete(vmId);
    if (history.length === 0 && (await this.#revive(vmId))) return this.get(vmId);
    let vm = emptyVm(vmId, this.host);
    for (const { event, seq } of history) vm = evolve(vm, event, seq);
    this.#vms.set(vmId, vm);
    if (history.length <= MAX_KNOWN_SEQS)
      this.#seqs.set(
        vmId,
        history.map((e) => e.seq),
      );
    else this.#seqs.delete(vmId);
    this.#prefetched.delete(vmId);
    this.#emit(vmId, "reloaded");
    return vm;
  }

  /** Drops a compacted VM from the cache (its tombstone stands for it from now on). */
  forget(vmId: string): void {
    if (!this.#vms.delete(vmId)) return;
    this.#revived.delete(vmId);
    this.#seqs.delete(vmId);
    this.#emit(vmId, "forgotten");
  }

  /**
   * Starts the tombstone look-up of a VM this worker does not hold, when its command is queued:
   * the VM's first command then does not wait a round trip for it in its lane. Safe because a
   * VM gets a tombstone only while it is cached (the compactor writes it, then forgets the VM),
   * and an uncached VM enters the cache only through its lane, which takes the answer.
   */
  prefetch(vmId: string): void {
    if (!this.#tombstones || this.#vms.has(vmId) || this.#prefetched.has(vmId)) return;
    if (!isValidId(vmId)) return;
    if (this.#prefetched.size >= MAX_PREFETCH) this.#dropStale();
    if (this.#prefetched.size >= MAX_PREFETCH) return;
    const tombstone = this.#tombstones.get(vmId);
    tombstone.catch(() => undefined); // the lane asks again
    this.#prefetched.set(vmId, { at: Date.now(), tombstone });
  }

  #dropStale(): void {
    const old = Date.now() - PREFETCH_FRESH_MS;
    for (const [id, p] of this.#prefetched) if (p.at < old) this.#prefetched.delete(id);
  }

  /** Caches a compacted VM from its tombstone; false when there is none. */
  async #revive(vmId: string): Promise<boolean> {
    // Kept until the VM is cached: its later commands queued meanwhile need no look-up either.
    const ahead = this.#prefetched.get(vmId);
    const fresh = ahead && Date.now() - ahead.at < PREFETCH_FRESH_MS;
    const t = fresh
      ? await ahead.tombstone.catch(() => this.#tombstones?.get(vmId))
      : await this.#tombstones?.get(vmId);
    if (!t) return false;
    this.#vms.set(vmId, vmFromTombstone(t));
    this.#prefetched.delete(vmId);
    this.#revived.set(vmId, t);
    return true;
  }

  /**
   * Before the first event of a VM used again after compaction, its tombstone goes onto its
   * subject (vm.tombstoned), so a later replay knows the commands of its earlier lives.
   */
  async #restoreTombstone(vm: Vm): Promise<Vm> {
    const t = this.#revived.get(vm.vmId);
    if (!t || vm.version !== 0) return vm;
    const event = tombstonedEvent(t, new Date());
    const seq = await this.store.append(event, 0);
    this.#revived.delete(vm.vmId);
    return this.#apply(event, seq, "appended");
  }

  /**
   * Rebuilds every VM of this host in one pass: from a snapshot taken at `from.seq` when one is
   * given (replaying only what came after it), otherwise from the start of the stream. An
   * aborted `signal` ends it with the signal's reason.
   */
  async replayAll(
    from?: { seq: number; vms: Vm[] },
    signal?: AbortSignal,
  ): Promise<{ count: number; lastSeq: number }> {
    if (from) {
      for (const vm of from.vms) this.#vms.set(vm.vmId, vm);
      this.#lastSeq = from.seq;
    }
    this.#partialReplay = from !== undefined;
    try {
      return await this.store.replay(
        this.host,
        from?.seq ?? 0,
        ({ event, seq }) => this.#apply(event, seq, "replayed"),
        signal,
      );
    } finally {
      this.#partialReplay = false;
    }
  }

  #apply(event: VmEvent, seq: number, change: Change): Vm {
    const before = this.get(event.vmId);
    const vm = evolve(before, event, seq);
    this.#vms.set(event.vmId, vm);
    this.#knowSeq(event.vmId, before.version, seq);
    if (this.#prefetched.size > 0) this.#prefetched.delete(event.vmId);
    if (seq > this.#lastSeq) this.#lastSeq = seq;
    this.#emit(event.vmId, change);
    return vm;
  }

  /**
   * A VM at version 0 has nothing on its subject (an append at 0 proves it, and so does a replay
   * from the stream's start); one seen first in a replay after a snapshot may have more.
   */
  #knowSeq(vmId: string, version: number, seq: number): void {
    if (version === 0) {
      if (this.#partialReplay) this.#seqs.delete(vmId);
      else this.#seqs.set(vmId, [seq]);
      return;
    }
    const known = this.#seqs.get(vmId);
    if (!known) return;
    if (known.length < MAX_KNOWN_SEQS) known.push(seq);
    else this.#seqs.delete(vmId);
  }

  #emit(vmId: string, change: Change): void {
    for (const l of this.#listeners) l(vmId, change);
  }
}
