import type { MsgHdrs } from "@nats-io/transport-node";
import type { Command } from "../../contracts/index.js";

/** A command message read back from the stream. */
export interface StoredCommand {
  seq: number;
  subject: string;
  data: Uint8Array;
  headers?: MsgHdrs | undefined;
}

/** The host's command stream and consumer, as the gate reads them. */
export interface CommandLog {
  /** The consumer's ack floor and the last stream sequence it delivered. */
  position(): Promise<{ ackFloor: number; delivered: number }>;
  /** The first message on `subject` at or after `fromSeq`, or null. */
  next(subject: string, fromSeq: number): Promise<StoredCommand | null>;
}

/** A valid command of the VM, earlier in the stream, with no outcome yet. */
export interface EarlierCommand {
  /** held: delivered to a worker that is gone (or lost in a reconnect); deferred: nak'd here. */
  kind: "held" | "deferred";
  seq: number;
  subject: string;
  data: Uint8Array;
  headers?: MsgHdrs | undefined;
  command: Command;
  /** deferred: when its redelivery is due (now + the nak delay it was sent back with). */
  retryAt?: number;
}

/** How often an open window asks whether the consumer's ack floor has passed it. */
const WINDOW_REFRESH_MS = 2_000;

/**
 * Keeps each VM's commands in stream order across crashes and retries (the contract's
 * promise). JetStream brings back a message that a dead worker held only after ack_wait, and
 * one this worker nak'd after its delay, while newer messages flow at once: without this gate
 * a VM's later commands would run first (a start before its prepare).
 *
 * Two sources of such gaps, both cheap to rule out in steady state:
 * - held: the consumer's unacked range (ack floor, last delivered] at start (what a previous
 *   worker held) and after a reconnect (what was lost in flight). Until the ack floor passes
 *   it, a VM's first command here reads the VM's earlier commands in that range back from the
 *   stream (one request each, once per VM). The handler runs such a command first, once; its
 *   own redelivery later is a duplicate;
 * - deferred: commands this process sent back (nak), until their outcome is recorded. The
 *   VM's later commands go back too, to come after them.
 */
export class OrderGate {
  #window: { from: number; to: number; checkedAt: number; openedAt: number } | undefined;
  #refreshing: Promise<void> | undefined;
  /** Per VM: commands up to this stream seq need no check (handled, or ahead in the lane). */
  readonly #verified = new Map<string, number>();
  /** Per VM: commands this process nak'd, by stream seq. */
  readonly #deferred = new Map<string, Map<number, EarlierCommand>>();
  /** Held commands already run ahead once here: a second time waits for their redelivery. */
  readonly #tried = new Set<number>();

  constructor(
    private readonly log: CommandLog,
    /** The valid command in a stream message, or undefined for bad input (never reordered). */
    private readonly parse: (data: Uint8Array, subject: string) => Command | undefined,
    /**
     * After this long every held message has been redelivered (ack_wait x (max_deliver + 1)):
     * the window closes even if the ack floor is stuck behind a message JetStream gave up on.
     */
    private readonly maxOpenMs: number,
  ) {}

  /**
   * Reads what another worker (one that died, or this one before a reconnect lost messages in
   * flight) may still hold: at start before consuming, and again after every reconnect.
   */
  async open(): Promise<{ from: number; to: number } | undefined> {
    const { ackFloor: floor, delivered } = await this.log.position();
    const now = Date.now();
    if (delivered > floor) {
      const w = this.#window;
      this.#window = {
        from: Math.min(w?.from ?? Infinity, floor + 1),
        to: Math.max(w?.to ?? 0, delivered),
        checkedAt: now,
        openedAt: now,
      };
      this.#verified.clear();
    }
    return this.#window && { from: this.#window.from, to: this.#window.to };
  }

  get windowOpen(): boolean {
    return this.#window !== undefined;
  }

  /** False when nothing can be ahead of this VM's commands (steady state): no lookup needed. */
  mayHaveEarlier(vmId: string): boolean {
    return this.#window !== undefined || this.#deferred.has(vmId);
  }

  /**
   * This process sent a valid command back to the stream (due again at `retryAt`): its VM's
   * later commands wait.
   */
  defer(c: Omit<EarlierCommand, "kind">): void {
    const vmId = c.command.vmId;
    const mine = this.#deferred.get(vmId) ?? new Map<number, EarlierCommand>();
    this.#deferred.set(vmId, mine.set(c.seq, { ...c, kind: "deferred" }));
  }

  /**
   * The command is settled (it has an outcome, or was dead-lettered without one): nothing
   * waits for it any more, and a VM with nothing sent back is off the slow path again.
   */
  forget(vmId: string, seq: number): void {
    const mine = this.#deferred.get(vmId);
    if (!mine?.delete(seq)) return;
    if (mine.size === 0) this.#deferred.delete(vmId);
  }

  /** Commands this process sent back that have not been settled. */
  get waiting(): number {
    let n = 0;
    for (const mine of this.#deferred.values()) n += mine.size;
    return n;
  }

  /** True the first time only: a held command is run ahead at most once per process. */
  firstTry(seq: number): boolean {
    if (this.#tried.has(seq)) return false;
    this.#tried.add(seq);
    return true;
  }

  /** The VM's earlier commands (before `seq`) that have no outcome in `seen`, oldest first. */
  async earlier(
    vmId: string,
    subject: string,
    seq: number,
    seen: { has(commandId: string): boolean },
  ): Promise<EarlierCommand[]> {
    const out = new Map<number, EarlierCommand>();
    const mine = this.#deferred.get(vmId);
    if (mine) {
      for (const [s, c] of mine) {
        if (seen.has(c.command.commandId)) mine.delete(s);
        else if (s < seq) out.set(s, c);
      }
      if (mine.size === 0) this.#deferred.delete(vmId);
    }
    await this.#refresh();
    const w = this.#window;
    // Messages of this VM after w.to came to this process in order: only the window counts,
    // up to this command, from where an earlier check of this VM ended.
    let from = w ? Math.max(w.from, (this.#verified.get(vmId) ?? 0) + 1) : 0;
    const until = w ? Math.min(seq - 1, w.to) : -1;
    if (w && from <= until) {
      let found = false;
      for (;;) {
        const m = await this.log.next(subject, from);
        if (!m || m.seq > until) break;
        const command = this.parse(m.data, m.subject);
        if (command && !seen.has(command.commandId) && !out.has(m.seq)) {
          out.set(m.seq, {
            kind: "held",
            seq: m.seq,
            subject: m.subject,
            data: m.data,
            headers: m.headers,
            command,
          });
          found = true;
        }
        from = m.seq + 1;
      }
      if (!found) this.#verified.set(vmId, until);
    }
    return [...out.values()].sort((a, b) => a.seq - b.seq);
  }

  /** Closes the window once the consumer's ack floor has passed it, or its time is up. */
  async #refresh(): Promise<void> {
    const w = this.#window;
    if (!w || Date.now() - w.checkedAt < WINDOW_REFRESH_MS) return;
    if (Date.now() - w.openedAt > this.maxOpenMs) {
      this.#close();
      return;
    }
    this.#refreshing ??= this.log
      .position()
      .then((p) => {
        w.checkedAt = Date.now();
        if (p.ackFloor >= w.to && this.#window === w) this.#close();
      })
      .catch(() => undefined) // asked again at the next check
      .finally(() => (this.#refreshing = undefined));
    await this.#refreshing;
  }

  #close(): void {
    this.#window = undefined;
    this.#verified.clear();
    this.#tried.clear();
  }
}
