import type { Logger } from "../../observability/logger.js";
import type { OrderGate } from "../pipeline/order-gate.js";
import type { Service } from "../service-stack.js";
import type { CommandConsumer } from "./command-consumer.js";
import type { Lanes } from "./lanes.js";

/**
 * The running half of the worker: commands pulled from the host's durable into the VMs' lanes.
 * Stopping it is the drain: stop pulling, hand queued commands back, let in-flight ones finish
 * for `drainTimeoutMs`, then abandon the rest (their intents stay recorded; the next worker of
 * this host resumes them).
 */
export class CommandPipeline implements Service {
  readonly name = "command consumer";
  /** The drain let every in-flight command finish (nothing was abandoned). */
  drainedCleanly = false;

  constructor(
    private readonly deps: {
      consumer: CommandConsumer;
      order: OrderGate;
      lanes: Lanes;
      /** Aborted when the drain gives up on in-flight commands; every command listens to it. */
      abandon: AbortController;
      drainTimeoutMs: number;
      log: Logger;
    },
  ) {}

  /** The drain waits for in-flight commands; the stack's own bound comes on top. */
  get stopTimeoutMs(): number {
    return this.deps.drainTimeoutMs + 10_000;
  }

  async start(stopping: AbortSignal): Promise<void> {
    // What a previous worker of this host held and never acked: its VMs' later commands wait.
    const held = await this.deps.order.open();
    if (held)
      this.deps.log.info({ from: held.from, to: held.to }, "commands a previous worker held");
    // The last check before commands are pulled: a stop asked for until now pulls none.
    stopping.throwIfAborted();
    await this.deps.consumer.start();
  }

  async stop(): Promise<void> {
    const { consumer, lanes, abandon, drainTimeoutMs, log } = this.deps;
    await Promise.race([
      consumer.stop().catch((e: unknown) => log.warn({ err: e }, "stopping the consumer failed")),
      new Promise((r) => setTimeout(r, 10_000).unref()),
    ]);
    const requeued = lanes.abandonQueued();
    const finished = await Promise.race([
      lanes.idle().then(() => true),
      new Promise<boolean>((r) => setTimeout(() => r(false), drainTimeoutMs).unref()),
    ]);
    if (!finished) {
      log.warn(
        { inFlight: lanes.running },
        "drain timeout: abandoning in-flight commands (intents stay recorded)",
      );
      abandon.abort(new Error("drained"));
      await lanes.idle();
    }
    this.drainedCleanly = finished;
    log.info({ requeued }, "drained");
  }
}
