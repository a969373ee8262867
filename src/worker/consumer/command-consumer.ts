import type { ConsumerMessages, JetStreamClient, JsMsg } from "@nats-io/jetstream";
import { commandVmToken } from "../../contracts/index.js";
import { retry } from "../../lib/retry.js";
import type { Logger } from "../../observability/logger.js";
import type { CommandMessage, Settlement } from "../pipeline/settlement.js";
import type { Lanes } from "./lanes.js";

/** Handles one delivered command and says what is to happen to its message. */
export interface CommandSink {
  handle(msg: CommandMessage): Promise<Settlement>;
}

export interface CommandConsumerOptions {
  ackWaitMs: number;
  batch: number;
  /**
   * Creates the host's durable again (it was deleted, or a restarted server lost it), from
   * `startSeq` when this process knows where it was (else from the start: duplicates are
   * harmless, commands are idempotent).
   */
  recreate: (startSeq: number | undefined) => Promise<unknown>;
  /** Called each time consuming starts again. */
  onRestart?: () => void;
  /** Sends an ack or term (the worker batches them with its publishes); default: at once. */
  send?: (settle: () => void) => void;
  /** Told of each new command's VM token as it is queued (to look the VM up ahead of its lane). */
  queued?: (vmKey: string) => void;
}

/**
 * Pulls the host's commands from its durable consumer and hands each to its VM's lane, in
 * stream order. Messages waiting behind a busy VM are kept alive with working(); a
 * redelivery of a message that is already queued or running replaces it instead of running twice.
 *
 * The pull loop is supervised: nats.js's consume() rides out reconnects by itself, but when the
 * durable is deleted it keeps pulling from nothing, and an iterator that ends or throws would
 * stop the host's commands without a word. Either way the durable is recreated (its position
 * is the stream's, so nothing is lost) and consuming starts again; `running` says whether it is.
 */
export class CommandConsumer {
  #messages: ConsumerMessages | undefined;
  #loop: Promise<void> | undefined;
  readonly #held = new Map<number, { msg: JsMsg; since: number }>();
  /**
   * Delivered here and not acked or terminated (nak'd ones come back), nor given up on by
   * JetStream (givenUp): where a new durable starts.
   */
  readonly #unsettled = new Set<number>();
  #lastDelivered = 0;
  #keepAlive: NodeJS.Timeout | undefined;
  readonly #stop = new AbortController();
  /** Pulling from a consumer that exists (false while it is being recreated). */
  running = false;
  /** How many times the pull loop was started again. */
  restarts = 0;

  constructor(
    private readonly js: JetStreamClient,
    private readonly stream: string,
    readonly durable: string,
    private readonly lanes: Lanes,
    private readonly handler: CommandSink,
    private readonly log: Logger,
    private readonly opts: CommandConsumerOptions,
  ) {}

  async start(): Promise<void> {
    // The first consume() is set up here, so a worker that cannot consume fails to start.
    const first = await this.#open();
    this.#keepAlive = setInterval(
      () => this.#touchHeld(),
      Math.max(500, Math.floor(this.opts.ackWaitMs / 3)),
    );
    this.#keepAlive.unref();
    this.#loop = this.#supervise(first);
  }

  async #open(): Promise<ConsumerMessages> {
    const consumer = await this.js.consumers.get(this.stream, this.durable);
    const messages = await consumer.consume({ max_messages: this.opts.batch });
    this.#messages = messages;
    this.running = true;
    void this.#watch(messages);
    return messages;
  }

  async #supervise(first: ConsumerMessages): Promise<void> {
    const stop = this.#stop.signal;
    for (let m: ConsumerMessages | undefined = first; m; m = await this.#restart()) {
      try {
        for await (const msg of m) this.#dispatch(msg);
        if (stop.aborted) return;
        this.log.warn("the command consumer stopped; starting it again");
      } catch (e) {
        if (stop.aborted) return;
        this.log.error({ err: e }, "the command consumer failed; starting it again");
      }
      this.running = false;
    }
  }

  /** Recreates the durable and consumes again, backing off while that fails; undefined once stopped. */
  async #restart(): Promise<ConsumerMessages | undefined> {
    const stop = this.#stop.signal;
    let messages: ConsumerMessages;
    try {
      messages = await retry(
        async () => {
          await this.opts.recreate(this.#resumeAt());
          stop.throwIfAborted(); // stopped while recreating: pull nothing more
          return this.#open();
        },
        {
          baseMs: 250,
          capMs: 10_000,
          waitFirst: true,
          signal: stop,
          onRetry: (e, attempt) =>
            this.log.warn({ err: e, attempt }, "could not consume commands yet; retrying"),
        },
      );
    } catch {
      return undefined; // only a stop ends the retrying
    }
    if (stop.aborted) {
      // stop() came while this restart was under way: it could not stop what it did not see.
      messages.stop();
      this.running = false;
      return undefined;
    }
    this.restarts++;
    this.opts.onRestart?.();
    this.log.info({ durable: this.durable }, "consuming commands again");
    return messages;
  }

  /** A deleted or missing durable is not coming back by itself: end this consume() so #supervise recreates it. */
  async #watch(messages: ConsumerMessages): Promise<void> {
    for await (const s of messages.status()) {
      if (s.type === "consumer_deleted" || s.type === "consumer_not_found") {
        this.log.warn({ status: s.type, durable: this.durable }, "the host's consumer is gone");
        this.running = false;
        messages.stop();
        return;
      }
    }
  }

  /** The first stream sequence a recreated durable must deliver again, when known. */
  #resumeAt(): number | undefined {
    if (this.#unsettled.size > 0) {
      let first = Infinity; // a loop, not Math.min(...set): a big set would overflow the stack
      for (const seq of this.#unsettled) if (seq < first) first = seq;
      return first;
    }
    return this.#lastDelivered > 0 ? this.#lastDelivered + 1 : undefined;
  }

  #dispatch(msg: JsMsg): void {
    if (msg.seq > this.#lastDelivered) this.#lastDelivered = msg.seq;
    const held = this.#held.get(msg.seq);
    if (held) {
      // Redelivered while still queued or running: the newer delivery carries the live ack.
      held.msg = msg;
      return;
    }
    this.#unsettled.add(msg.seq);
    const vmKey = commandVmToken(msg.subject);
    const entry = { msg, since: Date.now() };
    this.#held.set(msg.seq, entry);
    const delivery = new Delivery(entry, this.#unsettled, this.opts.send ?? now);
    this.opts.queued?.(vmKey);
    this.lanes.push(vmKey, {
      run: async () => {
        try {
          delivery.settle(await this.handler.handle(delivery));
        } catch (e) {
          // The handler settles every path itself; this is a bug, and the message comes back.
          this.log.error({ err: e, seq: msg.seq }, "command handler failed");
          delivery.settle({ kind: "nak", delayMs: 1_000 });
        } finally {
          this.#held.delete(msg.seq);
        }
      },
      abandon: () => {
        this.#held.delete(msg.seq);
        entry.msg.nak(); // straight back to the stream for whoever runs this host next
      },
    });
  }

  /** Held messages (queued or running) would be redelivered after ack_wait; working() keeps them ours. */
  #touchHeld(): void {
    const now = Date.now();
    for (const h of this.#held.values())
      if (now - h.since > this.opts.ackWaitMs / 3) h.msg.working();
  }

  /**
   * JetStream gave up on this sequence (its MAX_DELIVERIES advisory, which the DLQ mover
   * handles): it will not come back, so it must not pin where a recreated durable starts, and
   * the unsettled set must not keep it. Not at the nak of the last delivery: the server gives up
   * only when that nak's delay is over, and a durable lost before then would lose it.
   */
  givenUp(seq: number): void {
    this.#unsettled.delete(seq);
  }

  /** Stops pulling; messages already handed to lanes are left to the lanes. */
  async stop(): Promise<void> {
    this.#stop.abort();
    clearInterval(this.#keepAlive);
    this.#messages?.stop();
    this.running = false;
    await this.#loop;
  }
}

const now = (settle: () => void): void => settle();

/**
 * What the handler gets for a delivered command: the newest delivery of the message (a
 * redelivery while queued replaces it). Settling it acks, terms or naks that delivery; ack and
 * term also mark it settled, so a recreated durable knows where to start. A class, not a
 * literal with closures: one per command.
 */
class Delivery implements CommandMessage {
  constructor(
    private readonly entry: { msg: JsMsg },
    private readonly unsettled: Set<number>,
    private readonly send: (settle: () => void) => void,
  ) {}
  get subject(): string {
    return this.entry.msg.subject;
  }
  get data(): Uint8Array {
    return this.entry.msg.data;
  }
  get seq(): number {
    return this.entry.msg.seq;
  }
  get headers(): JsMsg["headers"] {
    return this.entry.msg.headers;
  }
  get info(): JsMsg["info"] {
    return this.entry.msg.info;
  }
  settle(s: Settlement): void {
    const { msg } = this.entry;
    switch (s.kind) {
      case "ack":
        this.unsettled.delete(msg.seq);
        this.send(() => msg.ack());
        return;
      case "term":
        this.unsettled.delete(msg.seq);
        this.send(() => msg.term());
        return;
      case "nak":
        msg.nak(s.delayMs);
        return;
      case "abandon":
        msg.nak(); // straight back, for the next worker of this host to resume
        return;
    }
  }
}
