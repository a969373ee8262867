import type { JetStreamManager, MsgRequest } from "@nats-io/jetstream";
import type { MsgHdrs } from "@nats-io/transport-node";
import type { Command } from "../contracts/index.js";

/** The parts of a command message the handler uses: a JsMsg, or an earlier command read back. */
export interface CommandMessage {
  readonly subject: string;
  readonly data: Uint8Array;
  readonly seq: number;
  readonly headers?: MsgHdrs | undefined;
  readonly info: { readonly redelivered: boolean; readonly deliveryCount: number };
  ack(): void;
  nak(millis?: number): void;
  term(): void;
  working(): void;
}

/** A valid command of the VM, earlier in the stream, with no outcome yet. */
export interface EarlierCommand {
  seq: number;
  subject: string;
  data: Uint8Array;
  headers?: MsgHdrs | undefined;
  command: Command;
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
 * - at start, the consumer's unacked range (ack floor, last delivered]: whatever a previous
 *   worker held. Until the ack floor passes it, a VM's first command here reads the VM's
 *   earlier commands in that range back from the stream (one request each, once per VM);
 * - commands this process sent back (nak): remembered until their outcome is recorded.
 * The handler runs what the gate returns first; their own redelivery later is a duplicate.
 */
export class OrderGate {
  #window: { from: number; to: number; checkedAt: number } | undefined;
  #refreshing: Promise<void> | undefined;
  /** Per VM: commands up to this stream seq need no check (handled, or ahead in the lane). */
  readonly #verified = new Map<string, number>();
  /** Per VM: commands this process nak'd, by stream seq. */
  readonly #deferred = new Map<string, Map<number, EarlierCommand>>();

  constructor(
    private readonly jsm: JetStreamManager,
    private readonly stream: string,
    private readonly durable: string,
    /** The valid command in a stream message, or undefined for bad input (never reordered). */
    private readonly parse: (data: Uint8Array, subject: string) => Command | undefined,
  ) {}

  /** Reads what a previous worker may still hold; call before consuming. */
  async open(): Promise<{ from: number; to: number } | undefined> {
    const info = await this.jsm.consumers.info(this.stream, this.durable);
    const floor = info.ack_floor.stream_seq;
    const delivered = info.delivered.stream_seq;
    this.#window =
      delivered > floor ? { from: floor + 1, to: delivered, checkedAt: Date.now() } : undefined;
    return this.#window && { from: this.#window.from, to: this.#window.to };
  }

  get windowOpen(): boolean {
    return this.#window !== undefined;
  }

  /** This process sent a valid command back to the stream: its VM's later commands wait. */
  defer(c: EarlierCommand): void {
    const vmId = c.command.vmId;
    const mine = this.#deferred.get(vmId) ?? new Map<number, EarlierCommand>();
    this.#deferred.set(vmId, mine.set(c.seq, c));
  }

  /** The VM's earlier commands (before `seq`) that have no outcome in `seen`, oldest first. */
  async earlier(
    vmId: string,
    subject: string,
    seq: number,
    seen: ReadonlySet<string>,
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
        // next_by_subj works on 2.9.10 though the client's type only names seq and last_by_subj.
        const m = await this.jsm.streams.getMessage(this.stream, {
          seq: from,
          next_by_subj: subject,
        } as unknown as MsgRequest);
        if (!m || m.seq > until) break;
        const command = this.parse(m.data, m.subject);
        if (command && !seen.has(command.commandId) && !out.has(m.seq)) {
          out.set(m.seq, {
            seq: m.seq,
            subject: m.subject,
            data: m.data,
            headers: m.header,
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

  /** Closes the start window once the consumer's ack floor has passed it. */
  async #refresh(): Promise<void> {
    const w = this.#window;
    if (!w || Date.now() - w.checkedAt < WINDOW_REFRESH_MS) return;
    this.#refreshing ??= this.jsm.consumers
      .info(this.stream, this.durable)
      .then((info) => {
        w.checkedAt = Date.now();
        if (info.ack_floor.stream_seq >= w.to) {
          this.#window = undefined;
          this.#verified.clear();
        }
      })
      .catch(() => undefined) // asked again at the next check
      .finally(() => (this.#refreshing = undefined));
    await this.#refreshing;
  }
}
