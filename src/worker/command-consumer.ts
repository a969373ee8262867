import type { ConsumerMessages, JetStreamClient, JsMsg } from "@nats-io/jetstream";
import type { Logger } from "../observability/logger.js";
import type { CommandHandler } from "./command-handler.js";
import type { Lanes } from "./lanes.js";

/**
 * Pulls the host's commands from its durable consumer and hands each to its VM's lane, in
 * stream order. Messages waiting behind a busy VM are kept alive with working(); a
 * redelivery of a message that is already queued or running replaces it instead of running twice.
 */
export class CommandConsumer {
  #messages: ConsumerMessages | undefined;
  #loop: Promise<void> | undefined;
  readonly #held = new Map<number, { msg: JsMsg; since: number }>();
  #keepAlive: NodeJS.Timeout | undefined;

  constructor(
    private readonly js: JetStreamClient,
    private readonly stream: string,
    private readonly durable: string,
    private readonly lanes: Lanes,
    private readonly handler: CommandHandler,
    private readonly log: Logger,
    private readonly opts: { ackWaitMs: number; batch: number },
  ) {}

  async start(): Promise<void> {
    const consumer = await this.js.consumers.get(this.stream, this.durable);
    this.#messages = await consumer.consume({ max_messages: this.opts.batch });
    this.#keepAlive = setInterval(
      () => this.#touchHeld(),
      Math.max(500, Math.floor(this.opts.ackWaitMs / 3)),
    );
    this.#keepAlive.unref();
    this.#loop = this.#run(this.#messages);
  }

  async #run(messages: ConsumerMessages): Promise<void> {
    try {
      for await (const msg of messages) this.#dispatch(msg);
    } catch (e) {
      this.log.error({ err: e }, "command consumer stopped");
    }
  }

  #dispatch(msg: JsMsg): void {
    const held = this.#held.get(msg.seq);
    if (held) {
      // Redelivered while still queued or running: the newer delivery carries the live ack.
      held.msg = msg;
      return;
    }
    const vmKey = msg.subject.split(".")[3] ?? "";
    const entry = { msg, since: Date.now() };
    this.#held.set(msg.seq, entry);
    this.lanes.push(vmKey, {
      run: async () => {
        try {
          await this.handler.handle(entry.msg);
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

  /** Queued messages would be redelivered after ack_wait; working() keeps them ours. */
  #touchHeld(): void {
    const now = Date.now();
    for (const h of this.#held.values())
      if (now - h.since > this.opts.ackWaitMs / 3) h.msg.working();
  }

  /** Stops pulling; messages already handed to lanes are left to the lanes. */
  async stop(): Promise<void> {
    clearInterval(this.#keepAlive);
    this.#messages?.stop();
    await this.#loop;
  }
}
