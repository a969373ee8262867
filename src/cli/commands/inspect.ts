import { Option, type Command } from "@commander-js/extra-typings";
import { VmState, type VmView } from "../../contracts/index.js";
import {
  EXIT,
  addConnectionFlags,
  hostArg,
  intOption,
  vmIdArg,
  withClient,
} from "../connection.js";
import { CliError } from "../errors.js";
import {
  colourOn,
  formatOf,
  isMachine,
  machine,
  outputOption,
  sinceOption,
  table,
  type Format,
} from "../output.js";
import { VM_HEADERS, WATCH_WIDTHS, describeVm, hostTable, vmRow, vmTable } from "../views.js";
import { watchView, type ViewChange } from "../watch.js";

const WATCH_HELP =
  "after printing the current state, print a line per change of the view until Ctrl-C";

/** vmq get | list | hosts: read the vmq-vms view and the vmq-hosts registry. */
export function registerInspect(program: Command): void {
  addConnectionFlags(
    program
      .command("get")
      .description(
        "Show one VM from the vmq-vms view (state, host, version, handle, pending command)",
      )
      .argument("<vmId>", "the VM's id")
      .addOption(outputOption())
      .option("--json", "same as -o json")
      .option("-w, --watch", WATCH_HELP)
      .addHelpText(
        "after",
        "\nExamples:\n  vmq get web-1\n  vmq get web-1 -o yaml\n  vmq get web-1 --watch        # then a line per change, until Ctrl-C\n",
      ),
  ).action(async (rawVmId, flags) => {
    const vmId = vmIdArg(rawVmId);
    const format = formatOf(flags);
    const wide = format === "wide";
    const widths = wide ? WATCH_WIDTHS.wide : WATCH_WIDTHS.table;
    await withClient(flags, async ({ client, names, nc }) => {
      const show = async () => {
        const v = await client.get(vmId);
        if (!v)
          throw new CliError(
            "vm::not-found",
            `VM ${vmId} is not in the ${names.vmsBucket} view`,
            "Check the vmId (vmq list); a lost view is rebuilt by vmq replay --rewrite-view.",
            EXIT.failed,
          );
        if (isMachine(format)) process.stdout.write(machine(format, v));
        else if (flags.watch)
          process.stdout.write(vmTable([v], wide, colourOn(), Date.now(), widths));
        else process.stdout.write(describeVm(v, colourOn()));
      };
      if (!flags.watch) return show();
      await watchView(
        nc,
        names,
        `*.${vmId}`,
        show,
        printChange(format, () => true),
      );
    });
  });

  addConnectionFlags(
    program
      .command("list")
      .description("List the VMs of the vmq-vms view that are not destroyed (--all for every one)")
      .option("--host <host>", "only VMs of this host")
      .addOption(new Option("--state <state>", "only VMs in this state").choices(VmState.options))
      .option("--all", "include destroyed VMs")
      .option("--since <when>", "only VMs changed since: a duration (10m, 2h, 7d) or an ISO time")
      .option("--limit <n>", "print at most this many (by vmId)", intOption("--limit"))
      .addOption(outputOption())
      .option("--json", "same as -o json")
      .option("-w, --watch", WATCH_HELP)
      .addHelpText(
        "after",
        "\nExamples:\n  vmq list\n  vmq list --host h1 --state running -o wide\n  vmq list --since 10m\n  vmq list --all --limit 50 -o json\n  vmq list --watch\n",
      ),
  ).action(async (flags) => {
    const host = hostArg(flags.host);
    const since = flags.since === undefined ? undefined : sinceOption(flags.since).getTime();
    const format = formatOf(flags);
    const wide = format === "wide";
    const widths = wide ? WATCH_WIDTHS.wide : WATCH_WIDTHS.table;
    // A destroyed VM's record stays until compaction; asked for by state, it is shown.
    const wanted = (v: VmView): boolean =>
      (!host || v.host === host) &&
      (!flags.state || v.state === flags.state) &&
      (flags.all || flags.state !== undefined || v.state !== "destroyed") &&
      (since === undefined || Date.parse(v.updatedAt) >= since);
    await withClient(flags, async ({ client, names, nc }) => {
      const show = async () => {
        const all = await client.list({
          ...(host ? { host } : {}),
          ...(flags.state ? { state: flags.state } : {}),
        });
        const live = all.filter(wanted);
        const vms = flags.limit === undefined ? live : live.slice(0, flags.limit);
        if (isMachine(format)) process.stdout.write(machine(format, vms));
        else
          process.stdout.write(
            vmTable(vms, wide, colourOn(), Date.now(), flags.watch ? widths : []),
          );
      };
      if (!flags.watch) return show();
      // While watching, a VM that changes to destroyed is shown: that is the change.
      const changed = (v: VmView): boolean =>
        (!host || v.host === host) && (!flags.state || v.state === flags.state);
      await watchView(nc, names, host ? `${host}.*` : ">", show, printChange(format, changed));
    });
  });

  addConnectionFlags(
    program
      .command("hosts")
      .description(
        "List live hosts from the vmq-hosts registry (a host that stops beating expires)",
      )
      .addOption(outputOption())
      .option("--json", "same as -o json")
      .addHelpText("after", "\nExamples:\n  vmq hosts\n  vmq hosts -o wide\n  vmq hosts -o json\n"),
  ).action(async (flags) => {
    const format = formatOf(flags);
    await withClient(flags, async ({ client }) => {
      const hosts = await client.hosts();
      if (isMachine(format)) process.stdout.write(machine(format, hosts));
      else process.stdout.write(hostTable(hosts, format === "wide", colourOn()));
    });
  });
}

/**
 * One line per change while watching: a table row (no header; the header came with the current
 * state), or one JSON/YAML document per change (`{ "removed": true, ... }` for a deleted record).
 */
export function printChange(format: Format, wanted: (v: VmView) => boolean) {
  const wide = format === "wide";
  return (c: ViewChange): void => {
    if (c.kind === "put" && !wanted(c.view)) return;
    if (isMachine(format)) {
      const doc = c.kind === "put" ? c.view : { removed: true, vmId: c.vmId, host: c.host ?? null };
      process.stdout.write(machine(format, doc));
      return;
    }
    const headers = wide ? VM_HEADERS.wide : VM_HEADERS.table;
    const row =
      c.kind === "put"
        ? vmRow(c.view, wide)
        : [c.vmId, c.host, "(removed)", ...headers.slice(3).map(() => undefined)];
    // The header row is dropped: only the change's own line is printed.
    const lines = table(
      headers,
      [row],
      colourOn(),
      wide ? WATCH_WIDTHS.wide : WATCH_WIDTHS.table,
    ).split("\n");
    process.stdout.write(`${lines[1] ?? ""}\n`);
  };
}
