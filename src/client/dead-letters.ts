import { randomUUID } from "node:crypto";
import type { JetStreamManager, StoredMsg } from "@nats-io/jetstream";
import { headers as natsHeaders, type MsgHdrs } from "@nats-io/transport-node";
import { DLQ_HEADERS, isValidId, parseCommand, parseSubject } from "../contracts/index.js";
import { VmqError } from "../lib/errors.js";
import type { VmqClient } from "./vm-client.js";
import { refusedAsTooLarge } from "./wire.js";

/**
 * The dead-letter stream, read and acted on: list, show, retry on the original subject, drop.
 * Shared by `vmq dlq` and `vmq ui`, so both refuse and retry the same way.
 */
const decoder = new TextDecoder();

export interface DlqEntry {
  seq: number;
  subject: string;
  time: string;
  headers: Record<string, string>;
  payload: string;
}

export interface DlqRetryOptions {
  /** Publish this fixed command instead of the stored one. */
  payload?: Uint8Array;
  /** Give the command a fresh commandId (needed when the old one already has an outcome). */
  newCommandId?: boolean;
  /** Publish even if the command is still invalid or already has an outcome. */
  force?: boolean;
}

export interface DlqRetryResult {
  dlqSeq: number;
  subject: string;
  commandSeq: number;
  commandId?: string;
}

export class DeadLetters {
  constructor(
    private readonly client: VmqClient,
    private readonly jsm: JetStreamManager,
  ) {}

  /** Every dead letter (of one host, if given), oldest first. */
  async list(host?: string): Promise<DlqEntry[]> {
    const { names } = this.client;
    const oc = await this.client.js.consumers.get(names.dlqStream, {
      filter_subjects: host ? `${names.prefix}.dlq.${host}.>` : `${names.prefix}.dlq.>`,
    });
    const out: DlqEntry[] = [];
    try {
      let pending = (await oc.info(true)).num_pending;
      while (pending > 0) {
        let got = 0;
        for await (const m of await oc.fetch({ max_messages: 256, expires: 2_000 })) {
          got++;
          out.push({
            seq: m.seq,
            subject: m.subject,
            time: m.time.toISOString(),
            headers: headerRecord(m.headers),
            payload: decoder.decode(m.data),
          });
          pending = m.info.pending;
          if (pending === 0) break;
        }
        if (got === 0) break;
      }
    } finally {
      await oc.delete().catch(() => false);
    }
    return out;
  }

  async show(seq: number): Promise<DlqEntry> {
    const m = await this.#get(seq);
    return {
      seq: m.seq,
      subject: m.subject,
      time: m.time.toISOString(),
      headers: headerRecord(m.header),
      payload: decoder.decode(m.data),
    };
  }

  /** Re-publishes the entry to its original subject (a new Nats-Msg-Id), then deletes it. */
  async retry(seq: number, opts: DlqRetryOptions = {}): Promise<DlqRetryResult> {
    const { names } = this.client;
    const stored = await this.#get(seq);
    const original = stored.header?.get(DLQ_HEADERS.subject) ?? "";
    const target = parseSubject(original);
    if (
      !target ||
      target.kind !== "cmd" ||
      target.prefix !== names.prefix ||
      target.rest.length > 0 ||
      !isValidId(target.host) ||
      !isValidId(target.vmId)
    )
      throw new VmqError(
        "dlq::no-subject",
        `DLQ entry ${seq} names no command subject of prefix ${names.prefix} (${DLQ_HEADERS.subject}: ${JSON.stringify(original)})`,
        { hint: "It cannot be retried; drop it (vmq dlq drop)." },
      );
    if (!opts.payload && stored.header?.get(DLQ_HEADERS.truncated))
      throw new VmqError(
        "dlq::still-invalid",
        `DLQ entry ${seq} holds a truncated copy (${stored.header.get(DLQ_HEADERS.truncated)} cut; the command was ${stored.header.get(DLQ_HEADERS.size)} bytes)`,
        { hint: "Pass the command again with --payload <file>, within the 64 KiB limit." },
      );
    let data: Uint8Array = opts.payload ?? stored.data;
    const parsed = parseCommand(data, target.vmId);
    if (!parsed.ok && !opts.force)
      throw new VmqError(
        "dlq::still-invalid",
        `the command is still invalid: ${parsed.message} [${parsed.code}]`,
      );
    let commandId = parsed.ok ? parsed.command.commandId : undefined;
    if (parsed.ok && opts.newCommandId) {
      commandId = randomUUID();
      data = new TextEncoder().encode(JSON.stringify({ ...parsed.command, commandId }));
    } else if (parsed.ok && !opts.force) {
      const done = (await this.client.history(target.host, target.vmId)).find(
        ({ event }) =>
          event.causationId === parsed.command.commandId && event.type !== "vm.command-accepted",
      );
      if (done)
        throw new VmqError(
          "dlq::already-done",
          `command ${parsed.command.commandId} already has an outcome (${done.event.type} at ${done.seq}); re-publishing it would have no effect`,
        );
    }
    const ack = await this.client.js
      .publish(original, data, {
        msgID: `dlq-retry:${randomUUID()}`,
        ...headersOpt(stored.header),
      })
      .catch((e: unknown) => {
        throw refusedAsTooLarge(e, data.length);
      });
    await this.jsm.streams.deleteMessage(names.dlqStream, seq);
    return {
      dlqSeq: seq,
      subject: original,
      commandSeq: ack.seq,
      ...(commandId ? { commandId } : {}),
    };
  }

  /** Deletes the entry for good. */
  async drop(seq: number): Promise<void> {
    await this.#get(seq);
    await this.jsm.streams.deleteMessage(this.client.names.dlqStream, seq);
  }

  async #get(seq: number): Promise<StoredMsg> {
    const stream = this.client.names.dlqStream;
    const m = await this.jsm.streams.getMessage(stream, { seq }).catch(() => null);
    if (!m) throw new VmqError("dlq::not-found", `no entry ${seq} in ${stream}`);
    return m;
  }
}

function headerRecord(h: MsgHdrs | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (h) for (const [k, v] of h) out[k] = v.join(", ");
  return out;
}

/** The command's own headers: neither NATS's nor the DLQ's. */
function headersOpt(h: MsgHdrs | undefined): { headers?: MsgHdrs } {
  if (!h) return {};
  const out = natsHeaders();
  let any = false;
  for (const [k, v] of h) {
    if (k.startsWith("Nats-") || k.startsWith("Vmq-Dlq-")) continue;
    for (const x of v) out.append(k, x);
    any = true;
  }
  return any ? { headers: out } : {};
}
