import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { jetstreamManager } from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import { names as namesFor } from "../../src/contracts/index.js";
import { kvFleetView } from "../../src/worker/nats/fleet-view.js";
import { Harness, SPEC } from "../helpers/worker-harness.js";

/**
 * A prepare's fleet-wide `vm::exists` check reads either each other host's key or one wildcard
 * (nats-server 2.9 matches a wildcard against every subject of the bucket, so the worker picks
 * the cheaper read for the fleet's shape). Both ways must give the same answer for every kind
 * of record another host may hold.
 */
describe(
  "the fleet-wide vm::exists check: per-host reads and the wildcard agree",
  { timeout: 60_000 },
  () => {
    let h: Harness;
    let vms: KV;
    let record: Record<string, unknown>;
    const names = () => namesFor(h.prefix);
    const put = (key: string, over: Record<string, unknown>) =>
      vms.put(key, JSON.stringify({ ...record, ...over }));

    before(async () => {
      h = await Harness.start();
      const { worker } = await h.worker({ host: "me" });
      await h.client.send("me", { type: "vm.prepare", vmId: "tmpl", spec: SPEC });
      await worker.drain();
      const kvm = new Kvm(h.nc);
      vms = await kvm.open(names().vmsBucket);
      const e = await vms.get(names().viewKey("me", "tmpl"));
      assert.equal(e?.operation, "PUT", "the worker wrote its record");
      record = e?.json<Record<string, unknown>>() ?? {};
      // Hosts known by their host record (b, v) and their lease (a).
      const hosts = await kvm.open(names().hostsBucket);
      await hosts.put("b", "{}");
      await hosts.put("v", "{}");
      const leases = await kvm.open(names().leasesBucket);
      await leases.put("a", "{}");
      await put("a.live", { host: "a", vmId: "live", state: "running" });
      await put("a.gone", { host: "a", vmId: "gone", state: "destroyed" });
      await put("a.moved", { host: "a", vmId: "moved", state: "destroyed" });
      await put("b.moved", { host: "b", vmId: "moved", state: "prepared" });
      await put("b.dropped", { host: "b", vmId: "dropped", state: "stopped" });
      await vms.purge("b.dropped");
      await put("b.forged", { host: "a", vmId: "forged", state: "running" });
      await put("me.mine", { host: "me", vmId: "mine", state: "running" });
      await put("v1only", { host: "v", vmId: "v1only", state: "stopped" });
    });
    after(async () => h.stop());

    const cases: [string, string | undefined][] = [
      ["live", "a"],
      ["gone", undefined],
      ["moved", "b"],
      ["dropped", undefined],
      ["forged", undefined],
      ["mine", undefined],
      ["v1only", "v"],
      ["never-seen", undefined],
    ];
    it("a failed read of the fleet's hosts is tried again by the next prepare, not kept", async () => {
      const jsm = await jetstreamManager(h.nc);
      let infos = 0;
      let failing = true;
      const streams = new Proxy(jsm.streams, {
        get(target, prop, receiver) {
          if (prop !== "info") return Reflect.get(target, prop, receiver) as unknown;
          return (...a: Parameters<typeof target.info>) => {
            infos++;
            if (failing) return Promise.reject(new Error("the server was away"));
            return target.info(...a);
          };
        },
      });
      const flaky = new Proxy(jsm, {
        get: (target, prop, receiver) =>
          prop === "streams" ? streams : (Reflect.get(target, prop, receiver) as unknown),
      });
      const fleet = kvFleetView(flaky, names(), "me", () => undefined, 0);
      assert.equal(await fleet.ownerElsewhere("live"), "a", "the wildcard answers meanwhile");
      const failed = infos;
      assert.ok(failed > 0, "it tried to read the hosts");
      failing = false;
      assert.equal(await fleet.ownerElsewhere("live"), "a");
      assert.ok(infos > failed, "and read them again on the next prepare");
    });

    for (const [way, literal] of [
      ["each host's key", 0],
      ["one wildcard", Number.POSITIVE_INFINITY],
    ] as const)
      it(`${way}: the other live host, or none`, async () => {
        const jsm = await jetstreamManager(h.nc);
        const fleet = kvFleetView(jsm, names(), "me", () => undefined, literal);
        for (const [vmId, owner] of cases)
          assert.equal(await fleet.ownerElsewhere(vmId), owner, `${vmId} under ${way}`);
      });
  },
);
