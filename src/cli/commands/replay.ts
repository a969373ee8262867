import type { Command } from "@commander-js/extra-typings";
import { Kvm, type KV } from "@nats-io/kv";
import { VmView, viewRecordAt } from "../../contracts/index.js";
import { emptyVm, evolve, toView, type Vm } from "../../domain/index.js";
import { JetStreamEventStore } from "../../event-store/jetstream-event-store.js";
import { addConnectionFlags, hostArg, printJson, withClient } from "../connection.js";
import { examples } from "../output.js";
import { vmTable } from "../views.js";
import { latestValues } from "../../client/kv-scan.js";
import { jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";

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
      .option("--json", "print a JSON array of the rebuilt view records")
      .addHelpText(
        "after",
        examples("vmq replay", "vmq replay --host h1 --json", "vmq replay --rewrite-view"),
      ),
  ).action(async (flags) => {
    const host = hostArg(flags.host);
    await withClient(flags, async ({ client, nc, names }) => {
      const store = new JetStreamEventStore(client.js, names);
      const vms = new Map<string, Vm>();
      const { count, lastSeq } = await store.replay(host ?? "*", 0, ({ event, seq }) => {
        const key = `${event.host}/${event.vmId}`;
        vms.set(key, evolve(vms.get(key) ?? emptyVm(event.vmId, event.host), event, seq));
      });
      // One record per host and vmId (view v2 keys `<host>.<vmId>`); the table shows one per
      // vmId: a vmId destroyed on one host and prepared on another shows the latest.
      const records = new Map<string, VmView>();
      for (const vm of vms.values()) {
        const v = toView(vm);
        if (v) records.set(names.viewKey(v.host, v.vmId), VmView.parse(v));
      }
      const views = new Map<string, VmView>();
      for (const v of records.values()) {
        const seen = views.get(v.vmId);
        if (!seen || seen.lastEventSeq < v.lastEventSeq) views.set(v.vmId, v);
      }
      const out = [...views.values()].sort((a, b) => a.vmId.localeCompare(b.vmId));
      process.stderr.write(
        `replayed ${count} events (up to sequence ${lastSeq}): ${out.length} VMs\n`,
      );
      if (flags.rewriteView) {
        const kv = await new Kvm(nc).open(names.vmsBucket);
        const r = await rewriteView(kv, await jetstreamManager(nc), names.vmsBucket, {
          records,
          lastSeq,
          host,
        });
        process.stderr.write(
          `${names.vmsBucket}: ${r.written} rewritten, ${r.unchanged} unchanged, ${r.newer} newer than the replay (left), ${r.removed} without events (removed), ${r.migrated} v1 records (keyed by vmId alone) removed\n`,
        );
      }
      if (flags.json) printJson(out);
      else process.stdout.write(vmTable(out));
    });
  });
}

/**
 * Writes the replayed records under their v2 keys with compare-and-set (a worker writing at the
 * same time wins: its record is at least as new), removes records without events and every v1
 * record (keyed by vmId alone) in scope: this is the migration of a view written before v2.
 */
async function rewriteView(
  kv: KV,
  jsm: JetStreamManager,
  bucket: string,
  o: { records: Map<string, VmView>; lastSeq: number; host: string | undefined },
): Promise<{
  written: number;
  unchanged: number;
  newer: number;
  removed: number;
  migrated: number;
}> {
  const n = { written: 0, unchanged: 0, newer: 0, removed: 0, migrated: 0 };
  for (const [key, v] of o.records) {
    const current = await kv.get(key);
    const have = current?.operation === "PUT" ? viewRecordAt(key, current.json()) : undefined;
    if (have && JSON.stringify(have) === JSON.stringify(v)) n.unchanged++;
    else if (have && have.lastEventSeq > o.lastSeq) n.newer++;
    else {
      try {
        await kv.update(key, JSON.stringify(v), current?.revision ?? 0);
        n.written++;
      } catch {
        n.newer++; // a worker wrote it meanwhile: its record is newer than the replay
      }
    }
  }
  for (const { key } of await latestValues(jsm, bucket)) {
    if (o.records.has(key)) continue;
    const current = await kv.get(key);
    if (current?.operation !== "PUT") continue;
    const parsed = VmView.safeParse(current.json());
    const inScope = !o.host || !parsed.success || parsed.data.host === o.host;
    if (!inScope) continue;
    if (!key.includes(".")) {
      await kv.delete(key);
      n.migrated++;
    } else if (!parsed.success || parsed.data.lastEventSeq <= o.lastSeq) {
      await kv.delete(key);
      n.removed++;
    }
  }
  return n;
}
