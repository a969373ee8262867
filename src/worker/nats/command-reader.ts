import {
  AckPolicy,
  DeliverPolicy,
  JetStreamApiError,
  type Consumer,
  type ConsumerConfig,
  type JetStreamClient,
  type JetStreamManager,
} from "@nats-io/jetstream";
import type { StoredCommand } from "../pipeline/order-gate.js";

/** How long an idle reader consumer lives on the server; it is reused only well inside that. */
const INACTIVE_MS = 30_000;
const REUSE_MS = 10_000;
/** A message the consumer said was there arrives at once; this only bounds a vanished one. */
const FETCH_MS = 2_000;

/**
 * Reads the host's own commands back from the commands stream (the order gate's earlier
 * commands, the DLQ mover's exhausted one) without the stream-wide `STREAM.MSG.GET`, whose
 * request names the sequence in its body and so would let a worker read every host's commands.
 *
 * It uses one ephemeral pull consumer of a fixed name, `reader-<host>`, that the worker may
 * create only with a filter under `<prefix>.cmd.<host>.>` (the server checks the filter against
 * the create subject, which the permissions scope). Reads are serialized; a read that continues
 * the previous one (same filter, the next sequence) reuses the consumer.
 */
export class CommandReader {
  #queue: Promise<unknown> = Promise.resolve();
  #open: { filter: string; after: number; pending: number; usedAt: number } | undefined;
  /** False only once this process deleted it: one left by an earlier process is dropped first. */
  #mayExist = true;
  #consumer: Consumer | undefined;

  constructor(
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    private readonly stream: string,
    /** `reader-<host>` (permissions.ts): the only name the worker may create it under. */
    readonly name: string,
  ) {}

  /** The first message on `filter` (a subject under the host's) at or after `fromSeq`, or null. */
  first(filter: string, fromSeq: number): Promise<StoredCommand | null> {
    const run = this.#queue.then(() => this.#first(filter, fromSeq));
    this.#queue = run.catch(() => undefined);
    return run;
  }

  /** The message at exactly `seq` under `filter`, or null when it is gone (expired). */
  async at(filter: string, seq: number): Promise<StoredCommand | null> {
    const m = await this.first(filter, seq);
    return m && m.seq === seq ? m : null;
  }

  async #first(filter: string, fromSeq: number): Promise<StoredCommand | null> {
    const o = this.#open;
    const continues =
      o && o.filter === filter && o.after + 1 === fromSeq && Date.now() - o.usedAt < REUSE_MS;
    if (!continues) {
      const pending = await this.#create(filter, fromSeq);
      this.#open = { filter, after: fromSeq - 1, pending, usedAt: Date.now() };
    }
    if (this.#open!.pending === 0) return null;
    // Unknown until the message is here: a failed pull may have moved the consumer on.
    this.#open = undefined;
    // Bound by name once: a recreated consumer of the same name is pulled the same way.
    const consumer = (this.#consumer ??= await this.js.consumers.get(this.stream, this.name));
    const m = await consumer.next({ expires: FETCH_MS });
    if (!m) return null; // gone meanwhile (expired): start afresh next time
    this.#open = { filter, after: m.seq, pending: m.info.pending, usedAt: Date.now() };
    return { seq: m.seq, subject: m.subject, data: m.data, headers: m.headers };
  }

  /** (Re)creates the consumer at `fromSeq`; returns how many messages it has to deliver. */
  async #create(filter: string, fromSeq: number): Promise<number> {
    const config: Partial<ConsumerConfig> = {
      name: this.name,
      filter_subject: filter,
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: Math.max(1, fromSeq),
      ack_policy: AckPolicy.None,
      mem_storage: true,
      num_replicas: 1,
      inactive_threshold: INACTIVE_MS * 1_000_000,
    };
    // A consumer's filter and start cannot change on 2.9: the old one goes first.
    await this.#delete();
    this.#mayExist = true;
    try {
      return (await this.jsm.consumers.add(this.stream, config)).num_pending;
    } catch (e) {
      // A delete that did not land: drop it and try once more.
      if (!(e instanceof JetStreamApiError)) throw e;
      this.#mayExist = true;
      await this.#delete();
      this.#mayExist = true;
      return (await this.jsm.consumers.add(this.stream, config)).num_pending;
    }
  }

  async #delete(): Promise<void> {
    this.#open = undefined;
    if (!this.#mayExist) return;
    await this.jsm.consumers.delete(this.stream, this.name).catch(() => false);
    this.#mayExist = false;
  }

  /** Removes the consumer (it would expire by itself after INACTIVE_MS). */
  async close(): Promise<void> {
    await this.#queue;
    await this.#delete().catch(() => undefined);
  }
}
