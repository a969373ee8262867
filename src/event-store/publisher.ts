import { JetStreamApiError } from "@nats-io/jetstream";
import {
  createInbox,
  headers,
  type Msg,
  type NatsConnection,
  type Subscription,
} from "@nats-io/transport-node";
import { VmqError } from "../lib/errors.js";

export interface PubAck {
  stream: string;
  seq: number;
  duplicate: boolean;
}

export interface PublishOptions {
  msgId?: string;
  /** Nats-Expected-Last-Subject-Sequence. */
  expectedLastSubjectSeq?: number;
  /** How long to wait for the PubAck. */
  timeoutMs?: number;
}

interface Pending {
  resolve: (ack: PubAck) => void;
  reject: (e: Error) => void;
  expires: number;
}

const decoder = new TextDecoder();

/**
 * JetStream publishes for the worker's hot path: what `js.publish` does (a request whose reply
 * is the PubAck), with the PubAcks of all publishes coming to one subscription, one sweep timer
 * for their timeouts, and the messages of one event-loop turn sent in one socket write.
 *
 * Why not `js.publish`: nats.js gives each request its own timer, promise chain and, when it
 * cleans up, an Error with a stack trace; with the socket write each publish and ack gets,
 * that was most of the worker's CPU per command (see docs/benchmark.md).
 *
 * Errors keep the shapes the callers know: a JetStream API error is nats.js's
 * `JetStreamApiError` (same codes); a timeout or no-responders is a retryable `VmqError`.
 */
export class JetStreamPublisher {
  readonly #inbox: string;
  readonly #sub: Subscription;
  readonly #pending = new Map<number, Pending>();
  #next = 0;
  #sweep: NodeJS.Timeout | undefined;
  /** Sends waiting for the end of this event-loop turn. */
  #queue: (() => void)[] = [];
  #scheduled = false;
  #flushed: (() => void)[] = [];

  constructor(
    private readonly nc: NatsConnection,
    inboxPrefix = "_INBOX",
    private readonly defaultTimeoutMs = 5_000,
  ) {
    this.#inbox = createInbox(inboxPrefix);
    this.#sub = nc.subscribe(`${this.#inbox}.*`, {
      callback: (err, m) => {
        if (!err) this.#onReply(m);
      },
    });
  }

  /** Publishes to a stream and resolves with its PubAck. */
  publish(subject: string, data: Uint8Array, opts: PublishOptions = {}): Promise<PubAck> {
    const id = ++this.#next;
    const reply = `${this.#inbox}.${id}`;
    const h = headers();
    if (opts.msgId !== undefined) h.set("Nats-Msg-Id", opts.msgId);
    if (opts.expectedLastSubjectSeq !== undefined)
      h.set("Nats-Expected-Last-Subject-Sequence", String(opts.expectedLastSubjectSeq));
    return new Promise<PubAck>((resolve, reject) => {
      this.#pending.set(id, {
        resolve,
        reject,
        expires: Date.now() + (opts.timeoutMs ?? this.defaultTimeoutMs),
      });
      this.#armSweep();
      this.later(() => {
        try {
          this.nc.publish(subject, data, { reply, headers: h });
        } catch (e) {
          this.#settle(id)?.reject(e as Error);
        }
      });
    });
  }

  /**
   * Runs `send` (a publish or an ack of the caller's) at the end of this event-loop turn, in
   * order with the publishes: what one turn sends goes out in one socket write per connection.
   */
  later(send: () => void): void {
    this.#queue.push(send);
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(() => this.#drain());
  }

  /** Resolves once everything handed to publish() and later() so far has been sent. */
  flushed(): Promise<void> {
    if (!this.#scheduled) return Promise.resolve();
    return new Promise((resolve) => this.#flushed.push(resolve));
  }

  /** Rejects what still waits for a PubAck and stops listening. */
  close(): void {
    this.#drain();
    clearInterval(this.#sweep);
    this.#sweep = undefined;
    for (const id of [...this.#pending.keys()])
      this.#settle(id)?.reject(new VmqError("nats::closed", "the publisher was closed"));
    if (!this.nc.isClosed()) this.#sub.unsubscribe();
  }

  #drain(): void {
    const queue = this.#queue;
    this.#queue = [];
    this.#scheduled = false;
    for (const send of queue) {
      try {
        send();
      } catch {
        /* each send reports its own failure */
      }
    }
    const waiters = this.#flushed;
    this.#flushed = [];
    for (const w of waiters) w();
  }

  #onReply(m: Msg): void {
    const id = Number(m.subject.slice(this.#inbox.length + 1));
    const p = this.#settle(id);
    if (!p) return; // timed out already
    if (m.data.length === 0 && m.headers?.code === 503) {
      p.reject(
        new VmqError("nats::no-responders", "no stream took the message (is JetStream up?)"),
      );
      return;
    }
    try {
      const r = JSON.parse(decoder.decode(m.data)) as Partial<PubAck> & {
        error?: { code: number; err_code: number; description: string };
      };
      if (r.error) p.reject(new JetStreamApiError(r.error));
      else if (typeof r.seq !== "number" || !r.stream)
        p.reject(new VmqError("nats::bad-reply", "the PubAck had no stream or sequence"));
      else p.resolve({ stream: r.stream, seq: r.seq, duplicate: r.duplicate === true });
    } catch (e) {
      p.reject(new VmqError("nats::bad-reply", "the PubAck was not JSON", { cause: e }));
    }
  }

  #settle(id: number): Pending | undefined {
    const p = this.#pending.get(id);
    if (p) this.#pending.delete(id);
    return p;
  }

  /** One timer for every waiting PubAck, running only while some wait. */
  #armSweep(): void {
    if (this.#sweep) return;
    this.#sweep = setInterval(() => {
      const now = Date.now();
      for (const [id, p] of this.#pending) {
        if (p.expires > now) continue;
        this.#pending.delete(id);
        p.reject(new VmqError("nats::timeout", "no PubAck in time"));
      }
      if (this.#pending.size === 0) {
        clearInterval(this.#sweep);
        this.#sweep = undefined;
      }
    }, 100);
    this.#sweep.unref();
  }
}
