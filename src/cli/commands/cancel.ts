import type { Command } from "@commander-js/extra-typings";
import { CommandId, type VmEvent } from "../../contracts/index.js";
import type { CancelResult } from "../../client/index.js";
import {
  EXIT,
  EXIT_CODES_HELP,
  addConnectionFlags,
  hostArg,
  intOption,
  printJson,
  vmIdArg,
  withClient,
} from "../connection.js";
import { CliError } from "../errors.js";
import { examples } from "../output.js";

/**
 * vmq cancel <commandId>: a queued command that no worker has accepted yet ends as
 * vm.command-rejected `command::cancelled`. What is printed is the command's outcome, the truth;
 * the cancel itself is only a request its worker honours if it comes first.
 */
export function registerCancel(program: Command): void {
  addConnectionFlags(
    program
      .command("cancel")
      .description(
        "Cancel a queued command that no worker has accepted yet (it is rejected with command::cancelled), and report its outcome",
      )
      .argument("<commandId>", "the command's id (printed when it was published)")
      .option("--host <id>", "the host it was published to (default: found from the commandId)")
      .option("--vm <vmId>", "the VM it is for (default: found from the commandId)")
      .option(
        "--timeout-ms <n>",
        "how long to wait for the command's outcome (default 60000)",
        intOption("--timeout-ms"),
      )
      .option("--json", "print the result as JSON")
      .addHelpText(
        "after",
        `\nExit: 0 cancelled; 1 too late (it was accepted or had ended: its outcome is shown) or unknown;\n4 the cancel is recorded but the command has no outcome yet (its worker is down or busy).\n${EXIT_CODES_HELP}${examples(
          "vmq cancel 0b8f6c1e-3f7a-4c55-9d1e-7f0a2b9c4d11",
          "vmq cancel 0b8f6c1e-3f7a-4c55-9d1e-7f0a2b9c4d11 --vm web-1 --host h1 --json",
        )}`,
      ),
  ).action(async (rawId, flags) => {
    const id = CommandId.safeParse(rawId);
    if (!id.success)
      throw new CliError(
        "cli::invalid-option",
        `invalid commandId: ${id.error.issues[0]?.message}`,
      );
    const host = hostArg(flags.host);
    const vmId = flags.vm === undefined ? undefined : vmIdArg(flags.vm);
    await withClient(flags, async ({ client }) => {
      const r = await client.cancel(id.data, {
        ...(host ? { host } : {}),
        ...(vmId ? { vmId } : {}),
        ...(flags.timeoutMs === undefined ? {} : { timeoutMs: flags.timeoutMs }),
      });
      if (flags.json) printJson(r);
      else if (r.result === "cancelled")
        process.stdout.write(
          `command ${r.commandId} (VM ${r.vmId}, host ${r.host}) cancelled: rejected with command::cancelled, it had no effect\n`,
        );
      if (r.result === "cancelled") return;
      throw tooLate(r);
    });
  });
}

const outcomeText = (o: VmEvent | undefined): string =>
  o === undefined
    ? "it has no outcome yet"
    : o.type === "vm.command-rejected" || o.type === "vm.command-failed"
      ? `its outcome: ${o.type} ${o.code} (${o.message})`
      : `its outcome: ${o.type}, now ${o.state}`;

function tooLate(r: CancelResult): CliError {
  const what = `command ${r.commandId} (VM ${r.vmId}, host ${r.host})`;
  if (r.result === "pending")
    return new CliError(
      "client::cancel-pending",
      `${what}: the cancel is recorded, but its worker has not taken the command yet; it is rejected with command::cancelled when it does`,
      `Follow it: vmq events ${r.vmId} --follow`,
      EXIT.timeout,
    );
  return new CliError(
    "client::cancel-too-late",
    r.result === "accepted"
      ? `${what} was already accepted by its worker before the cancel reached it, so it was not cancelled; ${outcomeText(r.outcome)}`
      : `${what} had already ended without running, so there was nothing to cancel; ${outcomeText(r.outcome)}`,
    undefined,
    EXIT.failed,
  );
}
