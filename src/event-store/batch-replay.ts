import { randomBytes } from "node:crypto";
import { AckPolicy, DeliverPolicy, type JetStreamManager } from "@nats-io/jetstream";
import { createInbox, type Msg, type NatsConnection } from "@nats-io/transport-node";
import type { StoredEvent } from "./event-store.js";
import { upcast } from "./upcasters.js";

/** No event for this long: the read is given up (the fetch path goes on from there). */
const STALL_MS = 2_000;
/** Messages per pull request; two requests are kept outstanding, so one is always being served. */
const BATCH = 2_048;
/** A request the server holds this long without messages ends with a 408: then ask where it is. */
const EXPIRES_MS = 1_000;

const enc = new TextEncoder();

export interface BatchReplayResult {
  lastSeq: number;
  count: number;
  /** Every event was read; false: go on from lastSeq another way. */
  complete: boolean;
}

/**
 * Reads a subject filter of the events stream from `afterSeq` through a pull consumer whose
 * batches land in a plain subscription: no per-message promise or JsMsg, each message decoded
 * where it lands, and the next batch asked for while one is still arriving. A push consumer did
 * the same with flow control, but on nats-server 2.9 its flow-control request could sit in the
 * server until the next idle heartbeat (250 ms, several times per 100,000 events); pull
 * requests bound what is in flight without it (docs/benchmark.md).
 *
 * Order is checked through the consumer sequence in each reply subject; a gap or a stall ends
 * it early with complete: false, and the caller reads the rest through the fetch path, which
 * repairs itself. The consumer is deleted whatever happens.
 */
export async function batchReplay(
  nc: NatsConnection,
  jsm: JetStreamManager,
  stream: string,
  filter: string,
  afterSeq: number,
  onEvent: (e: StoredEvent) => void,
  signal?: AbortSignal,
): Promise<BatchReplayResult> {
  let lastSeq = afterSeq;
  let count = 0;
  let fail: Error | undefined;
  let ended = false;
  let finish!: (complete: boolean) => void;
  const finished = new Promise<boolean>((r) => {
    finish = (complete) => {
      ended = true;
      r(complete);
    };
  });
  // A timer per event cost more than the fold: the last event's time, checked twice a second.
  let lastEventAt = Date.now();
  let stall: NodeJS.Timeout | undefined;
  const alive = (): void => {
    lastEventAt = Date.now();
    stall ??= setInterval(() => {
      if (Date.now() - lastEventAt > STALL_MS) finish(false);
    }, STALL_MS / 4);
  };
  const onAbort = (): void => finish(false);
  signal?.addEventListener("abort", onAbort, { once: true });

  const inbox = createInbox(inboxPrefixOf(nc));
  // Short: the name is in every message's reply subject, which the client parses byte by byte.
  const name = `rp-${randomBytes(6).toString("hex")}`;
  const next = `$JS.API.CONSUMER.MSG.NEXT.${stream}.${name}`;
  const ask = enc.encode(JSON.stringify({ batch: BATCH, expires: EXPIRES_MS * 1_000_000 }));
  /** Messages asked for so far (served in order, whichever request they answer). */
  let asked = 0;
  const pull = (): void => {
    asked += BATCH;
    nc.publish(next, ask, { reply: inbox });
  };
  let checking = false;
  /** A request ended without filling its batch: done, or ask again. */
  const idle = (): void => {
    if (checking || ended) return;
    checking = true;
    jsm.consumers
      .info(stream, name)
      .then((info) => {
        if (ended) return;
        // The pending count in a filtered consumer's replies can overstate what is left on 2.9.
        if (info.num_pending === 0 && info.delivered.consumer_seq === count) finish(true);
        else if (info.delivered.consumer_seq === count) {
          asked = count;
          pull();
          pull();
        }
      })
      .catch(() => finish(false))
      .finally(() => (checking = false));
  };

  const numbers: [number, number, number] = [0, 0, 0];
  const sub = nc.subscribe(inbox, {
    callback: (_err, m: Msg) => {
      if (ended) return; // late deliveries before the unsubscribe: not ours to apply
      if (signal?.aborted) return finish(false);
      // Status messages (404 no messages, 408 request expired, 409 ...) are empty; an event
      // never is. Checking the length first spares parsing every event's headers.
      if (m.data.length === 0 && m.headers?.code !== undefined && m.headers.code >= 100) {
        if (m.headers.code === 404 || m.headers.code === 408) {
          // A request ended short (what it did not fill is lost): one in its place, and ask
          // the consumer whether anything is left.
          pull();
          idle();
        } else finish(false);
        return;
      }
      alive();
      const ack = ackNumbers(m, numbers);
      const seq = ack[0];
      const cseq = ack[1];
      const pending = ack[2];
      if (cseq !== count + 1 || !Number.isSafeInteger(seq)) return finish(false);
      try {
        onEvent({ event: upcast(m.json()), seq });
      } catch (e) {
        fail = e instanceof Error ? e : new Error(String(e));
        return finish(false);
      }
      lastSeq = seq;
      count++;
      if (pending === 0) finish(true);
      // Keep two batches asked for: the server sends the next while these are decoded.
      else if (asked - count < BATCH) pull();
    },
  });
  let created = false;
  try {
    const ci = await jsm.consumers.add(stream, {
      name,
      filter_subject: filter,
      ack_policy: AckPolicy.None,
      ...(afterSeq > 0
        ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: afterSeq + 1 }
        : { deliver_policy: DeliverPolicy.All }),
      mem_storage: true,
      inactive_threshold: 60_000_000_000,
    });
    created = true;
    if (ci.num_pending === 0) finish(true);
    else {
      alive();
      pull();
      pull();
    }
    let complete = await finished;
    if (fail !== undefined) throw fail;
    signal?.throwIfAborted();
    if (!complete) {
      // Stalled: done when the consumer has nothing left and sent all it delivered.
      const info = await jsm.consumers.info(stream, name).catch(() => undefined);
      complete = info?.num_pending === 0 && info.delivered.consumer_seq === count;
    }
    return { lastSeq, count, complete };
  } finally {
    clearInterval(stall);
    signal?.removeEventListener("abort", onAbort);
    sub.unsubscribe();
    if (created) await jsm.consumers.delete(stream, name).catch(() => false);
  }
}

/** The connection's own inbox prefix (the worker's is _INBOX_<host>: its permissions say so). */
function inboxPrefixOf(nc: NatsConnection): string | undefined {
  return (nc as unknown as { options?: { inboxPrefix?: string } }).options?.inboxPrefix;
}

const DOT = 46;
const ZERO = 48;

/**
 * [stream seq, consumer seq, pending] from a message's reply subject,
 * `$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.<pending>`, read
 * from the end. From the reply's bytes where the client keeps them (no string per event);
 * NaN for a field that is not a plain decimal number.
 */
export function ackNumbers(m: Msg, out: [number, number, number]): [number, number, number] {
  const bytes = (m as unknown as { _msg?: { reply?: unknown } })._msg?.reply;
  if (!(bytes instanceof Uint8Array)) return ackNumbersOf(m.reply ?? "", out);
  let field = 0;
  let value = 0;
  let scale = 1;
  let digits = 0;
  for (let i = bytes.length - 1; i >= 0 && field < 4; i--) {
    const b = bytes[i] as number;
    if (b === DOT) {
      const n = digits > 0 && digits <= 15 ? value : Number.NaN;
      if (field === 0) out[2] = n;
      else if (field === 2) out[1] = n;
      else if (field === 3) out[0] = n;
      field++;
      value = 0;
      scale = 1;
      digits = 0;
    } else if (b >= ZERO && b <= ZERO + 9) {
      value += (b - ZERO) * scale;
      scale *= 10;
      digits++;
    } else digits = 16; // not a number: NaN when the field ends
  }
  if (field < 4) out[0] = out[1] = out[2] = Number.NaN;
  return out;
}

function ackNumbersOf(r: string, out: [number, number, number]): [number, number, number] {
  const p1 = r.lastIndexOf(".");
  const p2 = r.lastIndexOf(".", p1 - 1);
  const p3 = r.lastIndexOf(".", p2 - 1);
  const p4 = r.lastIndexOf(".", p3 - 1);
  const num = (s: string): number => (/^\d{1,15}$/.test(s) ? Number(s) : Number.NaN);
  out[0] = p4 < 0 ? Number.NaN : num(r.slice(p4 + 1, p3));
  out[1] = p3 < 0 ? Number.NaN : num(r.slice(p3 + 1, p2));
  out[2] = p1 < 0 ? Number.NaN : num(r.slice(p1 + 1));
  return out;
}
