import type { Command } from "@commander-js/extra-typings";
import { jetstreamManager } from "@nats-io/jetstream";
import { findTombstone, type WatchOptions } from "../../client/index.js";
import type { VmEvent } from "../../contracts/index.js";
import { addConnectionFlags, hostArg, vmIdArg, withClient } from "../connection.js";
import { formatOf, isMachine, machine, outputOption, sinceOption } from "../output.js";

/** vmq events: the event stream of one VM, one host or the fleet; history, then optionally live. */
export function registerEvents(program: Command): void {
  addConnectionFlags(
    program
      .command("events")
      .description(
        "Print events one per line (oldest first); without --follow it stops at the end of the stream",
      )
      .argument("[vmId]", "only this VM's events")
      .option("--host <host>", "only this host's events")
      .option("--follow", "keep printing new events until interrupted")
      .option(
        "--since <seq|when>",
        "start at this stream sequence, or this long ago (10m, 2h, 7d), or at this ISO time",
      )
      .addOption(outputOption(["table", "json", "yaml"]))
      .option("--json", "same as -o json: JSON lines, the event plus its stream sequence as seq")
      .addHelpText(
        "after",
        "\nExamples:\n  vmq events web-1\n  vmq events --host h1 --since 10m\n  vmq events --follow -o json | jq .type\n  vmq events web-1 --since 2026-01-01T00:00:00Z -o yaml\n",
      ),
  ).action(async (rawVmId, flags) => {
    const vmId = rawVmId === undefined ? undefined : vmIdArg(rawVmId);
    const host = hostArg(flags.host);
    const start = since(flags.since);
    const format = formatOf(flags);
    const abort = new AbortController();
    const stop = () => abort.abort();
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
    try {
      await withClient(flags, async ({ client, nc, names }) => {
        const opts: WatchOptions = { ...start, signal: abort.signal, toEnd: !flags.follow };
        let printed = 0;
        for await (const { event, seq } of client.watch(
          { ...(host ? { host } : {}), ...(vmId ? { vmId } : {}) },
          opts,
        )) {
          printed++;
          if (isMachine(format)) process.stdout.write(machine(format, { seq, ...event }));
          else process.stdout.write(`${eventLine(event, seq)}\n`);
        }
        // A VM with no events left may have been compacted: say so rather than print nothing.
        if (vmId && printed === 0 && !flags.follow) {
          const t = await findTombstone(await jetstreamManager(nc), names, vmId, host);
          if (t)
            process.stderr.write(
              `vmq: VM ${vmId} was destroyed at ${t.destroyedAt} and compacted at ${t.compactedAt} on host ${t.host}: its ${t.lastEventSeq > 0 ? "events were purged" : "history is gone"}; ${t.seen.length} command(s) are remembered, so none of them runs again\n`,
            );
        }
      });
    } finally {
      process.off("SIGINT", stop);
      process.off("SIGTERM", stop);
    }
  });
}

function since(raw: string | undefined): Pick<WatchOptions, "afterSeq" | "since"> {
  if (raw === undefined) return {};
  if (/^\d+$/.test(raw)) {
    const seq = Number(raw);
    return seq > 1 ? { afterSeq: seq - 1 } : {};
  }
  return { since: sinceOption(raw) };
}

/** `seq at host/vmId type state [detail]`: one event, one line. */
export function eventLine(e: VmEvent, seq: number): string {
  const detail = (() => {
    switch (e.type) {
      case "vm.command-accepted":
        return `${e.command.type} until ${e.deadline}`;
      case "vm.command-rejected":
        return `${e.code}: ${e.message}`;
      case "vm.command-failed":
        return `${e.code}: ${e.message} (attempt ${e.attempt}${e.retryable ? ", retryable" : ""})`;
      case "vm.stopped":
        return `how=${e.how}`;
      case "vm.state-observed":
        return `${e.previous} -> ${e.observed} (${e.source})`;
      case "vm.tombstoned":
        return `an earlier life, destroyed at ${e.destroyedAt}, remembers ${e.seen.length} command(s)`;
      default:
        return "";
    }
  })();
  const cause = e.causationId ? ` cmd=${e.causationId}` : "";
  return `${seq} ${e.at} ${e.host}/${e.vmId} ${e.type} ${e.state}${cause}${detail ? ` ${detail}` : ""}`;
}
