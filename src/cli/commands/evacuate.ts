import type { Command } from "@commander-js/extra-typings";
import { evacuate } from "../../client/evacuation.js";
import {
  addConnectionFlags,
  hostArg,
  intOption,
  printJson,
  table,
  withClient,
} from "../connection.js";
import { CliError } from "../errors.js";

/** vmq evacuate <host>: re-create a dead host's VMs elsewhere (docs/operations.md, "A host died"). */
export function registerEvacuate(program: Command): void {
  addConnectionFlags(
    program
      .command("evacuate")
      .description(
        "Fence a dead host (its lease) and re-create its VMs on other hosts by placement, from their recorded specs and base images; rerun to resume",
      )
      .argument("<host>", "the dead host's id")
      .option(
        "--wait <ms>",
        "how long to watch its lease stand still before refusing (default: its TTL + 30%)",
        intOption("--wait"),
      )
      .option(
        "--i-know-it-is-dead",
        "a host with no lease record whose heartbeat has not expired: evacuate it anyway",
      )
      .option(
        "--timeout-ms <ms>",
        "wait for each command's outcome (default 120000)",
        intOption("--timeout-ms"),
      )
      .option("--json", "print the evacuation record as JSON")
      .addHelpText(
        "after",
        "\nNo disk state moves: each VM is re-created from its base image, and sealed user-data is lost.\n\nExamples:\n  vmq evacuate h1\n  vmq evacuate h1 --wait 30000 --json\n",
      ),
  ).action(async (rawHost, flags) => {
    const host = hostArg(rawHost);
    if (!host) throw new CliError("config::invalid", "a host is required");
    await withClient(flags, async ({ client }) => {
      const loud = (s: string) => process.stderr.write(`vmq evacuate: ${s}\n`);
      const ev = await evacuate(client, host, {
        ...(flags.wait === undefined ? {} : { waitMs: flags.wait }),
        ...(flags.iKnowItIsDead ? { iKnowItIsDead: true } : {}),
        ...(flags.timeoutMs === undefined ? {} : { timeoutMs: flags.timeoutMs }),
        onProgress: (vm, step) => {
          if (!flags.json) loud(`${vm.vmId}: ${step}${vm.target ? ` on ${vm.target}` : ""}`);
        },
      });
      if (flags.json) return printJson(ev);
      process.stdout.write(
        table(
          ["VM", "WAS", "STEP", "ON", "LOST"],
          ev.vms.map((v) => [v.vmId, v.was, v.step, v.target, v.error ?? v.lost.length]),
        ),
      );
      for (const v of ev.vms) for (const l of v.lost) loud(`WARNING ${v.vmId}: lost ${l}`);
      loud(
        ev.completedAt
          ? `evacuation ${ev.id} of ${host} complete`
          : `evacuation ${ev.id} of ${host} is not complete: run vmq evacuate ${host} again`,
      );
      if (ev.vms.some((v) => v.step === "failed")) process.exitCode = 1;
    });
  });
}
