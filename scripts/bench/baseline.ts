/**
 * The raw JetStream baseline: the smallest correct program that does the durable work vmq's
 * worker must do per command. Pull-consume a command from the host's durable consumer, append an
 * intent event and an outcome event to the VM's subject, each with
 * Nats-Expected-Last-Subject-Sequence (the VM's last sequence, kept in memory from PubAcks) and
 * a Nats-Msg-Id, then ack. Per-VM order is kept the way the worker keeps it: one lane per VM
 * (strict arrival order, one command at a time), lanes in parallel up to `concurrency`.
 * Streams, subjects and consumer settings are the worker's (see src/event-store/provision.ts).
 */
import {
  AckPolicy,
  DeliverPolicy,
  RetentionPolicy,
  StorageType,
  jetstream,
  jetstreamManager,
  type ConsumerMessages,
  type JetStreamClient,
  type JsMsg,
} from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Names } from "./common.js";

const ns = (ms: number): number => ms * 1_000_000;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Creates VMQ-shaped command and event streams and the host's durable, as the worker would. */
export async function provisionBaseline(
  nc: NatsConnection,
  names: Names,
  host: string,
  maxAckPending: number,
): Promise<void> {
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({
    name: names.commandsStream,
    subjects: [`${names.prefix}.cmd.>`],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    max_age: ns(7 * 24 * 3_600_000),
    duplicate_window: ns(120_000),
  });
  await jsm.streams.add({
    name: names.eventsStream,
    subjects: [`${names.prefix}.evt.>`],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    duplicate_window: ns(120_000),
    allow_direct: true,
    deny_delete: true,
  });
  await jsm.consumers.add(names.commandsStream, {
    durable_name: names.durable(host),
    filter_subject: names.cmdFilter(host),
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    ack_wait: ns(30_000),
    max_deliver: 10,
    max_ack_pending: maxAckPending,
  });
}

/** Per-key FIFO lanes, at most `limit` keys running at once (the worker's Lanes, minimal). */
class MiniLanes {
  readonly #queues = new Map<string, (() => Promise<void>)[]>();
  readonly #ready: string[] = [];
  #running = 0;
  constructor(private readonly limit: number) {}

  push(key: string, task: () => Promise<void>): void {
    const q = this.#queues.get(key);
    if (q) q.push(task);
    else {
      this.#queues.set(key, [task]);
      this.#ready.push(key);
    }
    this.#pump();
  }

  #pump(): void {
    while (this.#running < this.limit && this.#ready.length > 0) {
      const key = this.#ready.shift() as string;
      const q = this.#queues.get(key) as (() => Promise<void>)[];
      const task = q[0] as () => Promise<void>;
      this.#running++;
      void task()
        .catch(() => undefined)
        .finally(() => {
          this.#running--;
          q.shift();
          if (q.length > 0) this.#ready.push(key);
          else this.#queues.delete(key);
          this.#pump();
        });
    }
  }
}

export class BaselineWorker {
  readonly js: JetStreamClient;
  readonly #lastSeq = new Map<string, number>();
  readonly #lanes: MiniLanes;
  #messages: ConsumerMessages | undefined;
  #loop: Promise<void> | undefined;
  acked = 0;
  errors = 0;
  firstMessageAt = 0;
  lastAckAt = 0;

  constructor(
    private readonly nc: NatsConnection,
    private readonly names: Names,
    private readonly host: string,
    readonly concurrency: number,
  ) {
    this.js = jetstream(nc);
    this.#lanes = new MiniLanes(concurrency);
  }

  async start(batch: number): Promise<void> {
    const consumer = await this.js.consumers.get(
      this.names.commandsStream,
      this.names.durable(this.host),
    );
    this.#messages = await consumer.consume({ max_messages: batch });
    const messages = this.#messages;
    this.#loop = (async () => {
      for await (const m of messages) {
        if (this.firstMessageAt === 0) this.firstMessageAt = performance.now();
        this.#lanes.push(m.subject.split(".")[3] ?? "", () => this.#handle(m));
      }
    })();
  }

  async #handle(m: JsMsg): Promise<void> {
    try {
      const vmId = m.subject.split(".")[3] ?? "";
      const cmd = JSON.parse(decoder.decode(m.data)) as { commandId: string; type: string };
      const subject = this.names.evt(this.host, vmId);
      const at = new Date().toISOString();
      const intent = await this.js.publish(
        subject,
        encoder.encode(
          JSON.stringify({ type: "accepted", vmId, causationId: cmd.commandId, at, command: cmd }),
        ),
        {
          msgID: `${vmId}:${cmd.commandId}:accepted`,
          expect: { lastSubjectSequence: this.#lastSeq.get(vmId) ?? 0 },
        },
      );
      const outcome = await this.js.publish(
        subject,
        encoder.encode(
          JSON.stringify({ type: "done", vmId, causationId: cmd.commandId, at, of: cmd.type }),
        ),
        { msgID: `${vmId}:${cmd.commandId}:outcome`, expect: { lastSubjectSequence: intent.seq } },
      );
      this.#lastSeq.set(vmId, outcome.seq);
      m.ack();
      this.acked++;
      this.lastAckAt = performance.now();
    } catch {
      this.errors++;
      m.nak(1_000);
    }
  }

  async stop(): Promise<void> {
    this.#messages?.stop();
    await this.#loop;
    await this.nc.flush();
  }
}
