import { Option, type Command } from "@commander-js/extra-typings";
import { VmState, type HostRecord, type VmView } from "../../contracts/index.js";
import {
  EXIT,
  addConnectionFlags,
  hostArg,
  intOption,
  printJson,
  table,
  vmIdArg,
  withClient,
} from "../connection.js";
import { CliError } from "../errors.js";

/** vmq get | list | hosts: read the vmq-vms view and the vmq-hosts registry. */
export function registerInspect(program: Command): void {
  addConnectionFlags(
    program
      .command("get")
      .description(
        "Show one VM from the vmq-vms view (state, host, version, handle, pending command)",
      )
      .argument("<vmId>", "the VM's id")
      .option("--json", "print the view record as JSON"),
  ).action(async (rawVmId, flags) => {
    const vmId = vmIdArg(rawVmId);
    await withClient(flags, async ({ client, names }) => {
      const v = await client.get(vmId);
      if (!v)
        throw new CliError(
          "vm::not-found",
          `VM ${vmId} is not in the ${names.vmsBucket} view`,
          "Check the vmId (vmq list); a lost view is rebuilt by vmq replay --rewrite-view.",
          EXIT.failed,
        );
      if (flags.json) printJson(v);
      else process.stdout.write(describeVm(v));
    });
  });

  addConnectionFlags(
    program
      .command("list")
      .description("List the VMs of the vmq-vms view that are not destroyed (--all for every one)")
      .option("--host <host>", "only VMs of this host")
      .addOption(new Option("--state <state>", "only VMs in this state").choices(VmState.options))
      .option("--all", "include destroyed VMs")
      .option("--limit <n>", "print at most this many (by vmId)", intOption("--limit"))
      .option("--json", "print a JSON array of view records")
      .addHelpText(
        "after",
        "\nExamples:\n  vmq list\n  vmq list --host h1 --state running\n  vmq list --all --limit 50 --json\n",
      ),
  ).action(async (flags) => {
    const host = hostArg(flags.host);
    await withClient(flags, async ({ client }) => {
      const all = await client.list({
        ...(host ? { host } : {}),
        ...(flags.state ? { state: flags.state } : {}),
      });
      // A destroyed VM's record stays until compaction; asked for by state, it is shown.
      const live = flags.all || flags.state ? all : all.filter((v) => v.state !== "destroyed");
      const vms = flags.limit === undefined ? live : live.slice(0, flags.limit);
      if (flags.json) printJson(vms);
      else process.stdout.write(vmTable(vms));
    });
  });

  addConnectionFlags(
    program
      .command("hosts")
      .description(
        "List live hosts from the vmq-hosts registry (a host that stops beating expires)",
      )
      .option("--json", "print a JSON array of host records"),
  ).action(async (flags) => {
    await withClient(flags, async ({ client }) => {
      const hosts = await client.hosts();
      if (flags.json) printJson(hosts);
      else process.stdout.write(hostTable(hosts));
    });
  });
}

export function vmTable(vms: VmView[]): string {
  return table(
    ["VMID", "HOST", "STATE", "VERSION", "BACKEND", "PENDING", "UPDATED"],
    vms.map((v) => [
      v.vmId,
      v.host,
      v.state,
      v.lastEventSeq,
      v.handle?.backend,
      v.pending ? `${v.pending.type} until ${v.pending.deadline}` : undefined,
      v.updatedAt,
    ]),
  );
}

function hostTable(hosts: HostRecord[]): string {
  return table(
    ["HOST", "ROLE", "STATE", "VERSION", "BACKENDS", "VMS", "IN-FLIGHT", "HEARTBEAT", "LABELS"],
    hosts.map((h) => [
      h.host,
      h.role,
      h.state,
      h.version,
      h.backends.join(","),
      h.vmCount,
      h.inFlight,
      h.heartbeatAt,
      Object.entries(h.labels)
        .map(([k, v]) => `${k}=${v}`)
        .join(",") || undefined,
    ]),
  );
}

export function describeVm(v: VmView): string {
  const rows: [string, string | number | undefined][] = [
    ["vmId", v.vmId],
    ["host", v.host],
    ["state", v.state],
    ["version", v.lastEventSeq],
    ["updated", v.updatedAt],
    [
      "pending",
      v.pending
        ? `${v.pending.type} (command ${v.pending.commandId}) since ${v.pending.since}, deadline ${v.pending.deadline}`
        : "none",
    ],
  ];
  if (v.handle) {
    const h = v.handle;
    rows.push(
      ["name", h.name],
      ["backend", h.backend],
      ["vcpus", h.vcpus],
      ["memoryMb", h.memoryMb],
      ["diskGb", h.diskGb],
      ["network", h.network.type],
      ["workDir", h.workDir],
      ["pid", h.pid],
      ["propolisAddr", h.propolisAddr],
      ["sshHostPort", h.sshHostPort],
    );
  }
  const shown = rows.filter(([, x]) => x !== undefined);
  const w = Math.max(...shown.map(([k]) => k.length));
  return shown.map(([k, x]) => `${`${k}:`.padEnd(w + 2)}${String(x)}\n`).join("");
}
