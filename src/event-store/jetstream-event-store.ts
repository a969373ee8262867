import {
  DeliverPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  type JetStreamClient,
} from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import type { VmEvent } from "../contracts/index.js";
import type { Names } from "../contracts/subjects.js";
import { isVmqError, VmqError } from "../lib/errors.js";
import { retry } from "../lib/retry.js";
import { untilAborted } from "../lib/time.js";
import type { EventStore, StoredEvent } from "./event-store.js";
import type { JetStreamPublisher } from "./publisher.js";
import { batchReplay } from "./batch-replay.js";
import { VmPurge } from "./vm-purge.js";
import { upcast } from "./upcasters.js";

export interface JetStreamEventStoreOptions {
  /** How long one append keeps retrying through a NATS outage before giving up. */
  appendTimeoutMs?: number;
  /** Per-attempt PubAck timeout. */
  publishTimeoutMs?: number;
  /** The worker's batched publisher; without one, appends use `js.publish`. */
  publisher?: JetStreamPublisher;
  /**
   * The connection a replay reads through into a plain subscription (batch-replay.ts, about
   * twice as fast); without one, or with replayVia "fetch", it fetches through an ordered
   * consumer.
   */
  connection?: NatsConnection;
  replayVia?: "batch" | "fetch";
}

/** VMQ_EVENTS: one subject per VM, appended with Nats-Expected-Last-Subject-Sequence. */
export class JetStreamEventStore implements EventStore {
  readonly #appendTimeoutMs: number;
  readonly #publishTimeoutMs: number;
  readonly #publisher: JetStreamPublisher | undefined;
  readonly #direct: NatsConnection | undefined;
  /** How a compacted VM's events go (by sequence, or a filtered purge). */
  readonly purger: VmPurge;

  constructor(
    private readonly js: JetStreamClient,
    private readonly names: Names,
    opts: JetStreamEventStoreOptions = {},
  ) {
    this.#appendTimeoutMs = opts.appendTimeoutMs ?? 60_000;
    this.#publishTimeoutMs = opts.publishTimeoutMs ?? 5_000;
    this.#publisher = opts.publisher;
    this.#direct = opts.replayVia === "fetch" ? undefined : opts.connection;
    this.purger = new VmPurge(() => js.jetstreamManager(), names);
  }

  async append(event: VmEvent, expectedSeq: number): Promise<number> {
    const subject = this.names.evt(event.host, event.vmId);
    // Buffer.from takes small strings from Node's pool: cheaper than TextEncoder per event.
    const data = Buffer.from(JSON.stringify(event));
    try {
      // The same msgID on a retry makes a publish whose PubAck was lost harmless: the server
      // answers duplicate with the original sequence (checked before the expectation).
      const publish = async (attempt: number): Promise<number> => {
        const ack = this.#publisher
          ? await this.#publisher.publish(subject, data, {
              msgId: event.eventId,
              expectedLastSubjectSeq: expectedSeq,
              timeoutMs: this.#publishTimeoutMs,
            })
          : await this.js.publish(subject, data, {
              msgID: event.eventId,
              expect: { lastSubjectSequence: expectedSeq },
              timeout: this.#publishTimeoutMs,
            });
        // A duplicate on the first attempt was not ours: the stream had this event before the
        // call (the caller's VM was stale). On a retry it is our own earlier attempt.
        if (ack.duplicate && attempt === 1) {
          throw new VmqError(
            "event-store::conflict",
            `VM ${event.vmId} has ${event.eventId} already, at ${ack.seq}`,
            { details: { expected: expectedSeq, duplicate: true, at: ack.seq } },
          );
        }
        return ack.seq;
      };
      // Timeouts and no-responders while NATS is away are retried; an API error is an answer.
      return await retry(publish, {
        baseMs: 100,
        capMs: 2_000,
        timeoutMs: this.#appendTimeoutMs,
        retryIf: (e) =>
          !(e instanceof JetStreamApiError) && !isVmqError(e, "event-store::conflict"),
      });
    } catch (e) {
      if (isVmqError(e, "event-store::conflict")) throw e;
      if (e instanceof JetStreamApiError && e.code === JetStreamApiCodes.StreamWrongLastSequence) {
        const actual = Number(/wrong last sequence: (\d+)/.exec(e.message)?.[1] ?? NaN);
        throw new VmqError(
          "event-store::conflict",
          `VM ${event.vmId} moved on: expected ${expectedSeq}, found ${actual}`,
          { cause: e, details: { expected: expectedSeq, actual } },
        );
      }
      throw new VmqError(
        "event-store::append-failed",
        `could not append ${event.type} for ${event.vmId}: ${(e as Error).message}`,
        { cause: e },
      );
    }
  }

  purgeVm(
    host: string,
    vmId: string,
    throughSeq: number,
    seqs?: readonly number[],
  ): Promise<number> {
    return this.purger.purge(host, vmId, throughSeq, seqs);
  }

  async readVm(host: string, vmId: string): Promise<StoredEvent[]> {
    const out: StoredEvent[] = [];
    await this.#scan(this.names.evt(host, vmId), 0, (e) => out.push(e));
    return out;
  }

  async replay(
    host: string,
    afterSeq: number,
    onEvent: (e: StoredEvent) => void,
    signal?: AbortSignal,
  ): Promise<{ lastSeq: number; count: number }> {
    const filter = host === "*" ? `${this.names.prefix}.evt.>` : this.names.evtFilter(host);
    let from = afterSeq;
    let read = 0;
    if (this.#direct) {
      const jsm = await this.js.jetstreamManager();
      const stream = this.names.eventsStream;
      const r = await batchReplay(this.#direct, jsm, stream, filter, from, onEvent, signal);
      if (r.complete) return { lastSeq: r.lastSeq, count: r.count };
      // A gap or a stall: the rest through the fetch path, from the last event applied.
      from = r.lastSeq;
      read = r.count;
    }
    const rest = await this.#scan(filter, from, onEvent, signal);
    return { lastSeq: rest.lastSeq, count: read + rest.count };
  }

  /** One ordered consumer over a subject filter; deleted when done (they outlive close()). */
  async #scan(
    filter: string,
    afterSeq: number,
    onEvent: (e: StoredEvent) => void,
    signal?: AbortSignal,
  ): Promise<{ lastSeq: number; count: number }> {
    let lastSeq = afterSeq;
    let count = 0;
    // Under load an ordered consumer was seen to stop short with events still pending (in
    // consume() and in fetch()), and it only repairs itself when a later message shows the gap.
    // So: fetch in bounded batches, and when a batch brings nothing while events are pending,
    // start a new consumer right after the last event applied.
    for (let restarts = 0; ; restarts++) {
      const oc = await this.js.consumers.get(this.names.eventsStream, {
        filter_subjects: filter,
        ...(lastSeq > 0
          ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: lastSeq + 1 }
          : { deliver_policy: DeliverPolicy.All }),
      });
      let pending = 0;
      try {
        pending = (await oc.info(true)).num_pending;
        while (pending > 0) {
          signal?.throwIfAborted();
          let got = 0;
          // Big batches: each one is a round trip the replay waits for.
          // A fetch still setting up its consumer after 30 s counts as a stall: start over.
          const batch = await untilAborted(
            oc.fetch({ max_messages: 10_000, expires: 2_000 }),
            AbortSignal.timeout(30_000),
          );
          if (!batch) break;
          for await (const m of batch) {
            if (signal?.aborted) break; // thrown below, once the consumer is deleted
            onEvent({ event: upcast(m.json()), seq: m.seq });
            lastSeq = m.seq;
            count++;
            got++;
            pending = m.info.pending;
            if (pending === 0) break;
          }
          if (got === 0) break;
        }
      } finally {
        await oc.delete().catch(() => false);
      }
      signal?.throwIfAborted();
      if (pending === 0) return { lastSeq, count };
      if (restarts >= 10) {
        throw new VmqError(
          "event-store::replay-stalled",
          `replay of ${filter} stopped at ${lastSeq} with ${pending} events left`,
        );
      }
    }
  }
}
