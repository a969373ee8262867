import type { Command } from "@commander-js/extra-typings";
import { Kvm } from "@nats-io/kv";
import { VmView } from "../../contracts/index.js";
import { emptyVm, evolve, toView, type Vm } from "../../domain/index.js";
import { JetStreamEventStore } from "../../event-store/jetstream-event-store.js";
import { addConnectionFlags, hostArg, printJson, withClient } from "../connection.js";
import { vmTable } from "./inspect.js";
import { latestValues } from "../../client/kv-scan.js";
import { jetstreamManager } from "@nats-io/jetstream";

/**
 * vmq replay: rebuilds the VM handles from the event stream alone (the same fold the worker
 * uses), prints them, and with --rewrite-view writes them into the vmq-vms view.
 */
export function registerReplay(program: Command): void {
  addConnectionFlags(
    program
      .command("replay")
      .description(
        "Rebuild VM handles offline from the event stream and print them; --rewrite-view repairs the vmq-vms view with them",
      )
      .option("--host <host>", "only this host's VMs (default: every host)")
      .option(
        "--rewrite-view",
        "write the rebuilt records into the vmq-vms view (entries newer than the replay are left alone; entries with no events are removed)",
      )
      .option("--json", "print a JSON array of the rebuilt view records"),
  ).action(async (flags) => {
    const host = hostArg(flags.host);
    await withClient(flags, async ({ client, nc, names }) => {
      const store = new JetStreamEventStore(client.js, names);
      const vms = new Map<string, Vm>();
      const { count, lastSeq } = await store.replay(host ?? "*", 0, ({ event, seq }) => {
        const key = `${event.host}/${event.vmId}`;
        vms.set(key, evolve(vms.get(key) ?? emptyVm(event.vmId, event.host), event, seq));
      });
      // One record per vmId: a vmId destroyed on one host and prepared on another shows the
      // host with the latest event, as the view does.
      const views = new Map<string, VmView>();
      for (const vm of vms.values()) {
        const v = toView(vm);
        const seen = v && views.get(v.vmId);
        if (v && (!seen || seen.lastEventSeq < v.lastEventSeq)) views.set(v.vmId, v);
      }
      const out = [...views.values()]
        .map((v) => VmView.parse(v))
        .sort((a, b) => a.vmId.localeCompare(b.vmId));
      process.stderr.write(
        `replayed ${count} events (up to sequence ${lastSeq}): ${out.length} VMs\n`,
      );
      if (flags.rewriteView) {
        const kv = await new Kvm(nc).open(names.vmsBucket);
        let written = 0;
        let unchanged = 0;
        let newer = 0;
        let removed = 0;
        for (const v of out) {
          const current = await kv.get(v.vmId);
          const parsed =
            current?.operation === "PUT" ? VmView.safeParse(current.json()) : undefined;
          if (parsed?.success && JSON.stringify(parsed.data) === JSON.stringify(v)) {
            unchanged++;
          } else if (parsed?.success && parsed.data.lastEventSeq > lastSeq) {
            newer++; // the worker moved on while we replayed: its record is newer than ours
          } else {
            await kv.put(v.vmId, JSON.stringify(v));
            written++;
          }
        }
        for (const { key } of await latestValues(await jetstreamManager(nc), names.vmsBucket)) {
          if (views.has(key)) continue;
          const current = await kv.get(key);
          if (current?.operation !== "PUT") continue;
          const parsed = VmView.safeParse(current.json());
          const inScope = !host || !parsed.success || parsed.data.host === host;
          const stale = !parsed.success || parsed.data.lastEventSeq <= lastSeq;
          if (inScope && stale) {
            await kv.delete(key);
            removed++;
          }
        }
        process.stderr.write(
          `${names.vmsBucket}: ${written} rewritten, ${unchanged} unchanged, ${newer} newer than the replay (left), ${removed} without events (removed)\n`,
        );
      }
      if (flags.json) printJson(out);
      else process.stdout.write(vmTable(out));
    });
  });
}
