import type { Command } from "@commander-js/extra-typings";
import type { HostRecord, VmEvent, VmView } from "../../contracts/index.js";
import { EXIT, addConnectionFlags, intOption, vmIdArg, withClient } from "../connection.js";
import { CliError } from "../errors.js";
import { age, colourOn, formatOf, isMachine, machine, outputOption } from "../output.js";
import { describeVm } from "../views.js";
import { eventLine } from "./events.js";

const DEFAULT_HISTORY = 10;

/** vmq describe <vm>: all an operator asks first about one VM, in one place (kubectl describe). */
export function registerDescribe(program: Command): void {
  addConnectionFlags(
    program
      .command("describe")
      .description(
        "Show one VM in full: its view record, its host (alive or not), what it is busy with, and its recent events",
      )
      .argument("<vmId>", "the VM's id")
      .option(
        "--events <n>",
        `how many of its latest events to show (default ${DEFAULT_HISTORY})`,
        intOption("--events"),
      )
      .addOption(outputOption(["table", "json", "yaml"]))
      .option("--json", "same as -o json: { view, host, events }")
      .addHelpText(
        "after",
        "\nExamples:\n  vmq describe web-1\n  vmq describe web-1 --events 50 -o json\n  vmq describe web-1 -o yaml\n",
      ),
  ).action(async (rawVmId, flags) => {
    const vmId = vmIdArg(rawVmId);
    const keep = flags.events ?? DEFAULT_HISTORY;
    await withClient(flags, async ({ client, names }) => {
      const view = await client.get(vmId);
      if (!view)
        throw new CliError(
          "vm::not-found",
          `VM ${vmId} is not in the ${names.vmsBucket} view`,
          "Check the vmId (vmq list --all); a lost view is rebuilt by vmq replay --rewrite-view.",
          EXIT.failed,
        );
      const [hosts, history] = await Promise.all([client.hosts(), client.history(view.host, vmId)]);
      const host = hosts.find((h) => h.host === view.host);
      const events = keep === 0 ? [] : history.slice(-keep);
      const format = formatOf(flags);
      if (isMachine(format))
        return void process.stdout.write(machine(format, { view, host: host ?? null, events }));
      process.stdout.write(text(view, host, events, history.length));
    });
  });
}

function text(
  view: VmView,
  host: HostRecord | undefined,
  events: { event: VmEvent; seq: number }[],
  total: number,
): string {
  const hostLine = host
    ? `${host.host}: ${host.state}, heartbeat ${age(host.heartbeatAt)} ago (${host.heartbeatAt}), vmq ${host.version}`
    : `${view.host}: not in the host registry (its worker is down, or it stopped beating)`;
  const busy = view.pending
    ? `${view.pending.type} (command ${view.pending.commandId}) since ${view.pending.since}, deadline ${view.pending.deadline}`
    : "nothing";
  return [
    describeVm(view, colourOn()),
    "",
    `Host:     ${hostLine}`,
    `Busy:     ${busy}`,
    "",
    `Events (last ${events.length} of ${total}):`,
    ...events.map(({ event, seq }) => `  ${eventLine(event, seq)}`),
    "",
  ].join("\n");
}
