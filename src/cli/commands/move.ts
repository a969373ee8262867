import type { Command } from "@commander-js/extra-typings";
import { move } from "../../client/move.js";
import type { MoveRecord } from "../../contracts/index.js";
import {
  addConnectionFlags,
  hostArg,
  intOption,
  printJson,
  vmIdArg,
  withClient,
} from "../connection.js";
import { CliError } from "../errors.js";
import { examples } from "../output.js";

const MiB = 1024 * 1024;

/** vmq move <vm> --to <host>: a cold move (docs/operations.md, "Moving a VM"). */
export function registerMove(program: Command): void {
  addConnectionFlags(
    program
      .command("move")
      .description(
        "Move a VM to another host, cold: stop it (if it runs), export its disk, prepare and start it there, destroy it here; rerun to resume",
      )
      .argument("<vm>", "the VM's id")
      .requiredOption("--to <host>", "the host to move it to (a live worker with its backend)")
      .option(
        "--timeout-ms <ms>",
        "wait for each step's outcome (default 600000; an export of a large disk may need more)",
        intOption("--timeout-ms"),
      )
      .option(
        "--stop-timeout-ms <ms>",
        "the graceful window of the stop on the source (default 30000, then escalation)",
        intOption("--stop-timeout-ms"),
      )
      .option("--abort", "undo a move under way that has not started the VM on its target")
      .option("--json", "print the move's record as JSON")
      .addHelpText(
        "after",
        "\nThe disk moves with the VM (flattened with its base image; QEMU and Noop only). Sealed user-data\ndoes not: the guest already ran it. A move interrupted anywhere is taken up by running the same\ncommand again." +
          examples(
            "vmq move web-1 --to h2",
            "vmq move web-1 --to h2 --timeout-ms 3600000 --json",
            "vmq move web-1 --to h2 --abort",
          ),
      ),
  ).action(async (rawVm, flags) => {
    const vmId = vmIdArg(rawVm);
    const to = hostArg(flags.to);
    if (!to) throw new CliError("config::invalid", "--to needs a host id");
    await withClient(flags, async ({ client }) => {
      const say = (s: string) => process.stderr.write(`vmq move: ${s}\n`);
      const rec = await move(client, vmId, {
        to,
        ...(flags.timeoutMs === undefined ? {} : { timeoutMs: flags.timeoutMs }),
        ...(flags.stopTimeoutMs === undefined ? {} : { stopTimeoutMs: flags.stopTimeoutMs }),
        ...(flags.abort ? { abort: true } : {}),
        onProgress: (r) => {
          if (!flags.json) say(progressLine(r));
        },
      });
      if (flags.json) return printJson(rec);
      say(`VM ${rec.vmId} moved from ${rec.from} to ${rec.to} (move ${rec.id})`);
    });
  });
}

function progressLine(r: MoveRecord): string {
  const what: Record<MoveRecord["step"], string> = {
    planned: `move ${r.id}: ${r.vmId} from ${r.from} to ${r.to} (it was ${r.was})`,
    stopped: `stopped on ${r.from}`,
    exported: `disk exported: ${r.disk ? `${(r.disk.size / MiB).toFixed(1)} MiB, ${r.disk.digest}` : "?"}`,
    registered: `disk recorded as image ${r.image ?? "?"}`,
    prepared: `prepared on ${r.to}`,
    started: r.was === "running" || r.was === "suspended" ? `running on ${r.to}` : `on ${r.to}`,
    done: `destroyed on ${r.from}; done`,
    compensating: `undoing: ${r.error ?? ""}`,
    failed: `undone: the VM is on ${r.from} as it was`,
  };
  return what[r.step];
}
