import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import type { Command } from "@commander-js/extra-typings";
import { jetstreamManager, type JetStreamManager, type StoredMsg } from "@nats-io/jetstream";
import { headers as natsHeaders, type MsgHdrs } from "@nats-io/transport-node";
import {
  DLQ_HEADERS,
  isValidId,
  parseCommand,
  parseSubject,
  type Names,
} from "../../contracts/index.js";
import {
  EXIT,
  addConnectionFlags,
  hostArg,
  intOption,
  printJson,
  withClient,
  type Connected,
} from "../connection.js";
import {
  age,
  colourOn,
  examples,
  formatOf,
  isMachine,
  machine,
  outputOption,
  table,
} from "../output.js";
import { refusedAsTooLarge } from "../../client/wire.js";
import { CliError } from "../errors.js";

const decoder = new TextDecoder();

interface DlqEntry {
  seq: number;
  subject: string;
  time: string;
  headers: Record<string, string>;
  payload: string;
}

/** vmq dlq list|show|retry|drop: read and act on the dead-letter stream. */
export function registerDlq(program: Command): void {
  const dlq = program
    .command("dlq")
    .description(
      "Dead-lettered commands (VMQ_DLQ): list, show one, retry it on its original subject, or drop it",
    )
    .addHelpText(
      "after",
      examples(
        "vmq dlq ls",
        "vmq dlq show 12",
        "vmq dlq retry 12 --new-command-id",
        "vmq dlq drop 12",
      ),
    );

  addConnectionFlags(
    dlq
      .command("list")
      .alias("ls")
      .description("List the dead-lettered commands")
      .option("--host <host>", "only this host's dead letters")
      .addOption(outputOption())
      .option("--json", "same as -o json: an array of entries (headers and payload)")
      .addHelpText(
        "after",
        "\nExamples:\n  vmq dlq ls\n  vmq dlq ls --host h1 -o wide\n  vmq dlq ls -o json\n",
      ),
  ).action(async (flags) => {
    const host = hostArg(flags.host);
    const format = formatOf(flags);
    await withClient(flags, async (c) => {
      const entries = await listEntries(c, host);
      if (isMachine(format)) {
        process.stdout.write(machine(format, entries));
        return;
      }
      const wide = format === "wide";
      process.stdout.write(
        table(
          ["SEQ", wide ? "AT" : "AGE", "SUBJECT", "CODE", "ATTEMPTS", "REASON"],
          entries.map((e) => [
            e.seq,
            wide ? (e.headers[DLQ_HEADERS.at] ?? e.time) : age(e.headers[DLQ_HEADERS.at] ?? e.time),
            e.headers[DLQ_HEADERS.subject],
            e.headers[DLQ_HEADERS.code],
            e.headers[DLQ_HEADERS.attempts],
            wide ? e.headers[DLQ_HEADERS.reason] : short(e.headers[DLQ_HEADERS.reason] ?? "", 80),
          ]),
          colourOn(),
        ),
      );
    });
  });

  addConnectionFlags(
    dlq
      .command("show")
      .description(
        "Show one dead letter: its headers (code, reason, attempts, ...) and raw payload",
      )
      .argument(
        "<seq>",
        "its sequence in the DLQ stream (vmq dlq list)",
        intOption("the DLQ sequence"),
      )
      .option("--json", "print it as JSON")
      .addHelpText("after", examples("vmq dlq show 12", "vmq dlq show 12 --json")),
  ).action(async (seq, flags) => {
    await withClient(flags, async (c) => {
      const e = toEntry(await getEntry(await jetstreamManager(c.nc), c.names, seq));
      if (flags.json) {
        printJson(e);
        return;
      }
      const w = Math.max(...Object.keys(e.headers).map((k) => k.length), 7);
      process.stdout.write(
        [
          `${"seq:".padEnd(w + 2)}${e.seq}`,
          `${"stored:".padEnd(w + 2)}${e.time}`,
          ...Object.entries(e.headers).map(([k, v]) => `${`${k}:`.padEnd(w + 2)}${v}`),
          "",
          e.payload,
          "",
        ].join("\n"),
      );
    });
  });

  addConnectionFlags(
    dlq
      .command("retry")
      .description(
        "Re-publish a dead-lettered command to its original subject (with a new Nats-Msg-Id), then delete the entry",
      )
      .argument("<seq>", "its sequence in the DLQ stream", intOption("the DLQ sequence"))
      .option(
        "--payload <file>",
        "publish this fixed command instead of the stored one (- for stdin)",
      )
      .option(
        "--new-command-id",
        "give the command a fresh commandId (needed when the old one already has an outcome)",
      )
      .option("--force", "publish even if the command is still invalid or already has an outcome")
      .option("--json", "print the result as JSON")
      .addHelpText(
        "after",
        examples(
          "vmq dlq retry 12",
          "vmq dlq retry 12 --payload fixed.json",
          "vmq dlq retry 12 --new-command-id --json",
        ),
      ),
  ).action(async (seq, flags) => {
    await withClient(flags, async (c) => {
      const jsm = await jetstreamManager(c.nc);
      const stored = await getEntry(jsm, c.names, seq);
      const original = stored.header?.get(DLQ_HEADERS.subject) ?? "";
      const target = parseSubject(original);
      if (
        !target ||
        target.kind !== "cmd" ||
        target.prefix !== c.names.prefix ||
        target.rest.length > 0 ||
        !isValidId(target.host) ||
        !isValidId(target.vmId)
      )
        throw new CliError(
          "dlq::no-subject",
          `DLQ entry ${seq} names no command subject of prefix ${c.names.prefix} (${DLQ_HEADERS.subject}: ${JSON.stringify(original)})`,
          "It cannot be retried; drop it (vmq dlq drop).",
          EXIT.failed,
        );
      if (!flags.payload && stored.header?.get(DLQ_HEADERS.truncated))
        throw new CliError(
          "dlq::still-invalid",
          `DLQ entry ${seq} holds a truncated copy (${stored.header.get(DLQ_HEADERS.truncated)} cut; the command was ${stored.header.get(DLQ_HEADERS.size)} bytes)`,
          "Pass the command again with --payload <file>, within the 64 KiB limit.",
        );
      let data: Uint8Array = flags.payload ? readPayload(flags.payload) : stored.data;
      const parsed = parseCommand(data, target.vmId);
      if (!parsed.ok && !flags.force)
        throw new CliError(
          "dlq::still-invalid",
          `the command is still invalid: ${parsed.message} [${parsed.code}]`,
          "Pass a fixed command with --payload <file>, or --force to publish it as it is.",
        );
      let commandId = parsed.ok ? parsed.command.commandId : undefined;
      if (parsed.ok && flags.newCommandId) {
        commandId = randomUUID();
        data = new TextEncoder().encode(JSON.stringify({ ...parsed.command, commandId }));
      } else if (parsed.ok && !flags.force) {
        const done = (await c.client.history(target.host, target.vmId)).find(
          ({ event }) =>
            event.causationId === parsed.command.commandId && event.type !== "vm.command-accepted",
        );
        if (done)
          throw new CliError(
            "dlq::already-done",
            `command ${parsed.command.commandId} already has an outcome (${done.event.type} at ${done.seq}); re-publishing it would have no effect`,
            "Add --new-command-id to run it again as a new command.",
          );
      }
      const ack = await c.client.js
        .publish(original, data, {
          msgID: `dlq-retry:${randomUUID()}`,
          ...headersOpt(stored.header),
        })
        .catch((e: unknown) => {
          throw refusedAsTooLarge(e, data.length);
        });
      await jsm.streams.deleteMessage(c.names.dlqStream, seq);
      const result = {
        dlqSeq: seq,
        subject: original,
        commandSeq: ack.seq,
        ...(commandId ? { commandId } : {}),
      };
      if (flags.json) printJson(result);
      else
        process.stdout.write(
          `re-published DLQ entry ${seq} to ${original} (stream sequence ${ack.seq}${commandId ? `, commandId ${commandId}` : ""}) and removed it from the DLQ\n`,
        );
    });
  });

  addConnectionFlags(
    dlq
      .command("drop")
      .description("Delete a dead letter for good")
      .argument("<seq>", "its sequence in the DLQ stream", intOption("the DLQ sequence"))
      .addHelpText("after", examples("vmq dlq drop 12")),
  ).action(async (seq, flags) => {
    await withClient(flags, async (c) => {
      const jsm = await jetstreamManager(c.nc);
      await getEntry(jsm, c.names, seq);
      await jsm.streams.deleteMessage(c.names.dlqStream, seq);
      process.stdout.write(`dropped DLQ entry ${seq}\n`);
    });
  });
}

async function getEntry(jsm: JetStreamManager, names: Names, seq: number): Promise<StoredMsg> {
  const m = await jsm.streams.getMessage(names.dlqStream, { seq }).catch(() => null);
  if (!m)
    throw new CliError(
      "dlq::not-found",
      `no entry ${seq} in ${names.dlqStream}`,
      "See vmq dlq list.",
      EXIT.failed,
    );
  return m;
}

async function listEntries(c: Connected, host: string | undefined): Promise<DlqEntry[]> {
  const oc = await c.client.js.consumers.get(c.names.dlqStream, {
    filter_subjects: host ? `${c.names.prefix}.dlq.${host}.>` : `${c.names.prefix}.dlq.>`,
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

function toEntry(m: StoredMsg): DlqEntry {
  return {
    seq: m.seq,
    subject: m.subject,
    time: m.time.toISOString(),
    headers: headerRecord(m.header),
    payload: decoder.decode(m.data),
  };
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

function readPayload(file: string): Uint8Array {
  try {
    return readFileSync(file === "-" ? 0 : file);
  } catch (e) {
    throw new CliError(
      "cli::unreadable-file",
      `cannot read the payload ${file}: ${(e as Error).message}`,
    );
  }
}

const short = (s: string, n: number): string => (s.length > n ? `${s.slice(0, n - 1)}…` : s);
