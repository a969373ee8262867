import { readFileSync } from "node:fs";
import type { Command } from "@commander-js/extra-typings";
import type { DeadLetters } from "../../client/index.js";
import { DLQ_HEADERS } from "../../contracts/index.js";
import { isVmqError } from "../../lib/errors.js";
import {
  EXIT,
  addConnectionFlags,
  hostArg,
  intOption,
  printJson,
  withClient,
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
import { CliError } from "../errors.js";

/** vmq dlq list|show|retry|drop: read and act on the dead-letter stream (the SDK's DeadLetters). */
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
    await withDlq(flags, async (d) => {
      const entries = await d.list(host);
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
    await withDlq(flags, async (d) => {
      const e = await d.show(seq);
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
    const payload = flags.payload ? readPayload(flags.payload) : undefined;
    await withDlq(flags, async (d) => {
      const result = await d.retry(seq, {
        ...(payload ? { payload } : {}),
        newCommandId: flags.newCommandId === true,
        force: flags.force === true,
      });
      const { commandId, subject, commandSeq } = result;
      if (flags.json) printJson(result);
      else
        process.stdout.write(
          `re-published DLQ entry ${seq} to ${subject} (stream sequence ${commandSeq}${commandId ? `, commandId ${commandId}` : ""}) and removed it from the DLQ\n`,
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
    await withDlq(flags, async (d) => {
      await d.drop(seq);
      process.stdout.write(`dropped DLQ entry ${seq}\n`);
    });
  });
}

/** Exit 2 for what the operator can fix in the call itself (a payload, a flag); 1 otherwise. */
const USAGE_CODES = new Set(["dlq::still-invalid", "dlq::already-done"]);

async function withDlq(flags: object, fn: (d: DeadLetters) => Promise<void>): Promise<void> {
  await withClient(flags, async ({ client }) => {
    try {
      await fn(await client.deadLetters());
    } catch (e) {
      if (isVmqError(e) && e.code.startsWith("dlq::"))
        throw new CliError(
          e.code,
          e.message,
          e.hint,
          USAGE_CODES.has(e.code) ? EXIT.usage : EXIT.failed,
        );
      throw e;
    }
  });
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
