import { toView } from "../../domain/index.js";
import type { Logger } from "../../observability/logger.js";
import type { VmReader } from "./vm-streams.js";

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
 * Writes view records, forward only (compare-and-set, a lower `lastEventSeq` is refused). Nobody
 * waits on a write: `flush` waits for the ones sent (a view write per command would otherwise
 * cost as much as the command's own events).
 */
export interface ViewWriter {
  write(vmId: string, json: string, lastEventSeq: number): void;
  flush(): Promise<void>;
  /** These VMs' records probably exist already (a replay found them): read before writing. */
  expectStored?(vmIds: Iterable<string>): void;
}

/**
 * Keeps the `vmq-vms` view behind the VMs: a changed VM is marked dirty, and its record is
 * written after a short window (latest wins), never on a command's critical path. The view is
 * a projection that `vmq replay` can always rebuild.
 */
export class ViewProjector {
  readonly #dirty = new Set<string>();
  #flushing: Promise<void> | undefined;
  #windowMs = VIEW_FLUSH_MS;
  /** Ends the current coalescing window early (flush). */
  #wake: (() => void) | undefined;
  #urgent = false;

  constructor(
    private readonly vms: VmReader,
    private readonly view: ViewWriter | undefined,
    private readonly log: Logger,
    /** Whether commands are waiting for a lane (widens the coalescing window). */
    private readonly backlog: () => boolean = () => false,
  ) {}

  /** The replayed VMs: their records were probably written by an earlier worker. */
  expectStored(vmIds: Iterable<string>): void {
    this.view?.expectStored?.(vmIds);
  }

  /** The VM's record is written at the end of the current window. */
  markDirty(vmId: string): void {
    this.#dirty.add(vmId);
    // A short delay lets a command's intent and outcome (and a busy VM's next commands)
    // coalesce into one view write instead of one per event.
    this.#flushing ??= this.#flush();
  }

  /** Waits until every pending view write is done (without waiting out the window). */
  async flush(): Promise<void> {
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
          const view = toView(this.vms.get(id));
          if (view) this.view.write(id, JSON.stringify(view), view.lastEventSeq);
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
