import type { VmEvent } from "../contracts/index.js";
import { emptyVm, evolve, toView, type Vm } from "../domain/index.js";
import type { EventStore } from "../event-store/event-store.js";
import type { Logger } from "../observability/logger.js";

/** How long view writes wait to coalesce (the view is eventually consistent by design). */
const VIEW_FLUSH_MS = 25;
/**
 * While commands queue up behind busy lanes the window doubles per flush up to this, so a VM
 * that changes again within it costs one view write, not one per command: under a backlog a
 * view write is a good part of a command's cost. It drops back to 25 ms once the queue is empty.
 */
const VIEW_FLUSH_MAX_MS = 1_000;
/** View records sent per event-loop turn. */
const VIEW_CHUNK = 100;

/**
 * Writes view records. The worker publishes them without waiting for each PubAck (a view write
 * per command would otherwise cost as much as the command's own events) and flushes per batch.
 */
export interface ViewWriter {
  write(vmId: string, json: string): void;
  flush(): Promise<void>;
}

/**
 * The worker's VMs, folded from the event stream, and the `vmq-vms` view kept behind them.
 * View writes are coalesced per VM (latest wins) and never on the command's critical path:
 * the view is a projection that `vmq replay` can always rebuild.
 */
export class VmRegistry {
  readonly #vms = new Map<string, Vm>();
  readonly #dirty = new Set<string>();
  /** VMs changed since the last snapshot. */
  readonly changedSinceSnapshot = new Set<string>();
  #flushing: Promise<void> | undefined;
  #windowMs = VIEW_FLUSH_MS;
  /** Ends the current coalescing window early (flushView). */
  #wake: (() => void) | undefined;
  #urgent = false;
  lastSeq = 0;

  constructor(
    readonly host: string,
    private readonly store: EventStore,
    private readonly view: ViewWriter | undefined,
    private readonly log: Logger,
    /** Whether commands are waiting for a lane (widens the view's coalescing window). */
    private readonly backlog: () => boolean = () => false,
  ) {}

  get size(): number {
    return this.#vms.size;
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

  /** Applies an event that is now at `seq` in the stream. */
  apply(event: VmEvent, seq: number, opts: { writeView?: boolean } = {}): Vm {
    const vm = evolve(this.get(event.vmId), event, seq);
    this.#vms.set(event.vmId, vm);
    this.changedSinceSnapshot.add(event.vmId);
    if (seq > this.lastSeq) this.lastSeq = seq;
    if (opts.writeView !== false) this.markDirty(event.vmId);
    return vm;
  }

  /** Rebuilds one VM from its stream (after a sequence conflict). */
  async reload(vmId: string): Promise<Vm> {
    let vm = emptyVm(vmId, this.host);
    for (const { event, seq } of await this.store.readVm(this.host, vmId))
      vm = evolve(vm, event, seq);
    this.#vms.set(vmId, vm);
    this.markDirty(vmId);
    return vm;
  }

  /**
   * Rebuilds every VM of this host in one pass: from a snapshot taken at `from.seq` when one is
   * given (replaying only what came after it), otherwise from the start of the stream.
   */
  async replayAll(
    from?: { seq: number; vms: Vm[] },
    signal?: AbortSignal,
  ): Promise<{ count: number; lastSeq: number }> {
    if (from) {
      for (const vm of from.vms) this.#vms.set(vm.vmId, vm);
      this.lastSeq = from.seq;
    }
    const r = await this.store.replay(
      this.host,
      from?.seq ?? 0,
      ({ event, seq }) => this.apply(event, seq, { writeView: false }),
      signal,
    );
    // A worker that died may not have written its last view updates: rewrite them all.
    for (const id of this.#vms.keys()) this.markDirty(id);
    // What a snapshot already holds need not be written again.
    if (from && r.count === 0) this.changedSinceSnapshot.clear();
    return r;
  }

  markDirty(vmId: string): void {
    this.#dirty.add(vmId);
    // A short delay lets a command's intent and outcome (and a busy VM's next commands)
    // coalesce into one view write instead of one per event.
    this.#flushing ??= this.#flush();
  }

  /** Waits until every pending view write is done (without waiting out the window). */
  async flushView(): Promise<void> {
    while (this.#flushing) {
      this.#urgent = true;
      this.#wake?.();
      await this.#flushing;
    }
  }

  async #flush(): Promise<void> {
    try {
      while (this.#dirty.size > 0) {
        await this.#window();
        const batch = [...this.#dirty];
        this.#dirty.clear();
        if (!this.view) continue;
        for (let i = 0; i < batch.length; i++) {
          const id = batch[i] as string;
          const view = toView(this.get(id));
          if (view) this.view.write(id, JSON.stringify(view));
          // The records share the connection with the commands' appends, and the server takes
          // a connection's messages in order: a window's worth of records (thousands under a
          // backlog) in one go would hold every command's PubAck behind them.
          if (i % VIEW_CHUNK === VIEW_CHUNK - 1) await new Promise((r) => setImmediate(r));
        }
        try {
          await this.view.flush();
        } catch (e) {
          // The stream is the truth; a missed view write is repaired by the next one.
          this.log.warn({ err: e, vms: batch.length }, "could not update the vms view");
        }
      }
    } finally {
      this.#flushing = undefined;
      this.#urgent = false;
    }
  }

  #window(): Promise<void> {
    if (this.#urgent) return Promise.resolve();
    this.#windowMs = this.backlog()
      ? Math.min(VIEW_FLUSH_MAX_MS, this.#windowMs * 2)
      : VIEW_FLUSH_MS;
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.#wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, this.#windowMs);
      this.#wake = done;
    });
  }
}
