import { createHash } from "node:crypto";
import { headers, type MsgHdrs, type NatsConnection } from "@nats-io/transport-node";
import type { JetStreamClient } from "@nats-io/jetstream";
import { DLQ_HEADERS, INVALID_VM_TOKEN, isValidId, type Names } from "../../contracts/index.js";
import { withheldRaw } from "../../lib/user-data.js";
import type { DeadLetter, DeadLetters } from "../ports.js";

/** nats-server's default max_payload, when the connection does not say. */
const DEFAULT_MAX_PAYLOAD = 1024 * 1024;
/** Room left for what the size estimate below may miss. */
const SLACK = 512;
/** The command's own headers are kept only while they take at most this share of max_payload. */
const ORIGINAL_HEADERS_SHARE = 0.25;

/** The largest message (headers + body) the server behind `nc` accepts. */
export const maxPayload = (nc: NatsConnection): number =>
  nc.info?.max_payload ?? DEFAULT_MAX_PAYLOAD;

/**
 * VMQ_DLQ: a command that could not be handled is copied there, the raw payload byte for byte
 * (but plaintext user-data, replaced by its digest), its headers, and why. The msgID makes the
 * copy unique per command message, so the handler and the max-deliveries mover can both try
 * without making two copies. A copy never exceeds the server's max_payload (a command just
 * under it plus the DLQ headers would): what does not fit is cut, and the copy says so with its
 * size and digest before the cut, so it is still recorded instead of being retried for ever.
 */
export function jetStreamDeadLetters(
  js: JetStreamClient,
  names: Names,
  host: string,
  maxPayload: () => number = () => DEFAULT_MAX_PAYLOAD,
): DeadLetters {
  return { put: (d) => deadLetter(js, names, host, d, maxPayload()) };
}

async function deadLetter(
  js: JetStreamClient,
  names: Names,
  host: string,
  d: DeadLetter,
  limit: number,
): Promise<void> {
  const vmToken = d.subject.split(".")[3];
  const h = headers();
  const cut: string[] = [];
  // Nats-* headers would act on the DLQ stream (a Nats-Msg-Id dedupes, expectations fail):
  // they are kept under Vmq-Dlq-Orig-*, so the copy still says which commandId it was.
  const original = d.headers ? renamed(d.headers) : [];
  if (entriesBytes(original) <= limit * ORIGINAL_HEADERS_SHARE) {
    for (const [k, v] of original) h.append(k, v);
  } else cut.push("headers");
  // Set after the command's own, so a command cannot pass off its own Vmq-Dlq-* values.
  h.set(DLQ_HEADERS.code, d.code);
  h.set(DLQ_HEADERS.reason, oneLine(d.reason));
  h.set(DLQ_HEADERS.attempts, String(d.attempts));
  h.set(DLQ_HEADERS.subject, d.subject);
  h.set(DLQ_HEADERS.streamSeq, String(d.streamSeq));
  h.set(DLQ_HEADERS.at, new Date().toISOString());
  if (d.lastError) h.set(DLQ_HEADERS.lastError, oneLine(d.lastError));
  if (d.vmState) h.set(DLQ_HEADERS.vmState, d.vmState);
  // Plaintext user-data never reaches the DLQ: its digest and size stand for it.
  const { data: copy, withheld } = withheldRaw(d.data);
  if (withheld) h.set(DLQ_HEADERS.userData, "withheld");
  // Room for the truncation headers themselves (their longest values) and the msgID.
  const reserve = entriesBytes([
    [DLQ_HEADERS.truncated, "payload,headers"],
    [DLQ_HEADERS.size, "9999999999"],
    [DLQ_HEADERS.sha256, "0".repeat(64)],
    ["Nats-Msg-Id", `dlq:${names.commandsStream}:${d.streamSeq}`],
  ]);
  const room = limit - headerBytes(h) - reserve - SLACK;
  let data = copy;
  if (data.length > room) {
    data = data.subarray(0, Math.max(0, room));
    cut.unshift("payload");
  }
  if (cut.length) {
    // Of the copy before the cut (user-data already withheld): never a digest of a secret.
    h.set(DLQ_HEADERS.truncated, cut.join(","));
    h.set(DLQ_HEADERS.size, String(copy.length));
    h.set(DLQ_HEADERS.sha256, createHash("sha256").update(copy).digest("hex"));
  }
  const subject = names.dlq(host, isValidId(vmToken) ? vmToken : INVALID_VM_TOKEN);
  await js.publish(subject, data, {
    headers: h,
    msgID: `dlq:${names.commandsStream}:${d.streamSeq}`,
    timeout: 10_000,
  });
}

function renamed(from: MsgHdrs): [string, string][] {
  const out: [string, string][] = [];
  for (const [k, vs] of from) {
    const name = k.startsWith("Nats-") ? `${DLQ_HEADERS.originalPrefix}${k}` : k;
    for (const v of vs) out.push([name, v]);
  }
  return out;
}

/** The encoded size of header lines (`Name: value\r\n`). */
function entriesBytes(entries: Iterable<[string, string]>): number {
  let n = 0;
  for (const [k, v] of entries) n += Buffer.byteLength(k) + Buffer.byteLength(v) + 4;
  return n;
}

/** The encoded size of a header block: the `NATS/1.0` line, the lines, the blank line. */
function headerBytes(h: MsgHdrs): number {
  const lines: [string, string][] = [];
  for (const [k, vs] of h) for (const v of vs) lines.push([k, v]);
  return "NATS/1.0\r\n".length + entriesBytes(lines) + 2;
}

/** Header values are single lines of bounded length. */
const oneLine = (s: string): string => s.replace(/[\r\n]+/g, " ").slice(0, 1024);
