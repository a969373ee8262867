import { headers } from "@nats-io/transport-node";
import type { JetStreamClient } from "@nats-io/jetstream";
import { DLQ_HEADERS, INVALID_VM_TOKEN, isValidId, type Names } from "../../contracts/index.js";
import { withheldRaw } from "../../lib/user-data.js";
import type { DeadLetter, DeadLetters } from "../ports.js";

/**
 * VMQ_DLQ: a command that could not be handled is copied there, the raw payload byte for byte
 * (but plaintext user-data, replaced by its digest), its headers, and why. The msgID makes the copy unique per command message, so the handler and
 * the max-deliveries mover can both try without making two copies.
 */
export function jetStreamDeadLetters(js: JetStreamClient, names: Names, host: string): DeadLetters {
  return { put: (d) => deadLetter(js, names, host, d) };
}

async function deadLetter(
  js: JetStreamClient,
  names: Names,
  host: string,
  d: DeadLetter,
): Promise<void> {
  const vmToken = d.subject.split(".")[3];
  const h = headers();
  // Nats-* headers would act on the DLQ stream (a Nats-Msg-Id dedupes, expectations fail):
  // they are kept under Vmq-Dlq-Orig-*, so the copy still says which commandId it was.
  if (d.headers) {
    for (const [k, v] of d.headers) {
      const name = k.startsWith("Nats-") ? `${DLQ_HEADERS.originalPrefix}${k}` : k;
      for (const x of v) h.append(name, x);
    }
  }
  h.set(DLQ_HEADERS.code, d.code);
  h.set(DLQ_HEADERS.reason, oneLine(d.reason));
  h.set(DLQ_HEADERS.attempts, String(d.attempts));
  h.set(DLQ_HEADERS.subject, d.subject);
  h.set(DLQ_HEADERS.streamSeq, String(d.streamSeq));
  h.set(DLQ_HEADERS.at, new Date().toISOString());
  if (d.lastError) h.set(DLQ_HEADERS.lastError, oneLine(d.lastError));
  if (d.vmState) h.set(DLQ_HEADERS.vmState, d.vmState);
  // Plaintext user-data never reaches the DLQ: its digest and size stand for it.
  const { data, withheld } = withheldRaw(d.data);
  if (withheld) h.set(DLQ_HEADERS.userData, "withheld");
  const subject = names.dlq(host, isValidId(vmToken) ? vmToken : INVALID_VM_TOKEN);
  await js.publish(subject, data, {
    headers: h,
    msgID: `dlq:${names.commandsStream}:${d.streamSeq}`,
    timeout: 10_000,
  });
}

/** Header values are single lines of bounded length. */
const oneLine = (s: string): string => s.replace(/[\r\n]+/g, " ").slice(0, 1024);
