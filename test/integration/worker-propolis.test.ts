import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import {
  makePropolisFixture,
  type PropolisFixture,
} from "../helpers/fake-propolis/propolis-fixture.js";
import { Harness, eventually } from "../helpers/worker-harness.js";

const spec = {
  name: "pv",
  backend: "propolis" as const,
  imagePath: "base",
  vcpus: 1,
  memoryMb: 256,
  network: { type: "none" as const },
};

describe(
  "worker with the Propolis backend (fake propolis-server and zones)",
  // Generous: every zone, ZFS and link step is a Node process, slow on a loaded machine.
  { timeout: 600_000 },
  () => {
    let h: Harness;
    let fx: PropolisFixture;
    before(async () => {
      h = await Harness.start();
      fx = await makePropolisFixture();
      await h.worker({ host: "ill", extra: [fx.backend] });
    });
    after(async () => {
      await h.stop();
      await fx.cleanup();
    });
    const send = (cmd: Parameters<Harness["client"]["send"]>[1]) =>
      h.client.send("ill", cmd, { timeoutMs: 180_000 });
    /** A guest-ip answer; asked again while the query itself runs out of time (a slow fake). */
    const guestIp = () =>
      eventually(
        async () => {
          const r = await h.client.query("ill", "pv-2", "guest-ip");
          return !r.ok && r.error.code === "hypervisor::aborted" ? undefined : r;
        },
        120_000,
        "a guest-ip answer",
      );

    it("drives a VM through its lifecycle from NATS commands, and refuses suspend as unsupported", async () => {
      const steps = [
        [{ type: "vm.prepare", vmId: "pv-1", spec }, "vm.prepared", "prepared"],
        [{ type: "vm.start", vmId: "pv-1" }, "vm.started", "running"],
        [{ type: "vm.stop", vmId: "pv-1", timeoutMs: 5_000 }, "vm.stopped", "stopped"],
        [{ type: "vm.start", vmId: "pv-1" }, "vm.started", "running"], // Stop is terminal in Propolis: start re-ensures
      ] as const;
      for (const [cmd, type, state] of steps) {
        const r = await send(cmd);
        assert.equal(r.outcome.type, type, `${cmd.type}: ${JSON.stringify(r.outcome)}`);
        assert.equal(r.outcome.state, state);
        if (r.outcome.type === "vm.stopped") {
          // Propolis Stop halts the VMM without asking the guest: never recorded as graceful.
          assert.equal(r.outcome.how, "forced");
        }
      }
      const view = await h.client.query("ill", "pv-1", "console");
      assert.ok(
        view.ok && view.console.type === "websocket" && view.console.url.startsWith("ws://"),
      );
      const calls = (await fx.illumos.calls()).length;
      const s = await send({ type: "vm.suspend", vmId: "pv-1" });
      assert.equal(s.outcome.type, "vm.command-rejected");
      assert.equal(s.accepted, false, "rejected before any intent was recorded");
      if (s.outcome.type === "vm.command-rejected") {
        assert.equal(s.outcome.code, "hypervisor::unsupported");
        assert.equal(s.outcome.state, "running");
      }
      assert.equal((await fx.illumos.calls()).length, calls, "no zone or ZFS tool was run");
    });

    it("a guest-initiated halt arrives as vm.state-observed from the state monitor", async () => {
      const fake = fx.fakes.get("pv-1");
      assert.ok(fake);
      fake.guestHalt();
      const e = await eventually(
        async () => {
          const last = (await h.client.history("ill", "pv-1")).at(-1)?.event;
          return last?.type === "vm.state-observed" && last.state === "stopped" ? last : undefined;
        },
        20_000,
        "observed halt",
      );
      if (e.type === "vm.state-observed") {
        assert.equal(e.source, "propolis");
        assert.equal(e.previous, "running");
        assert.match(e.detail ?? "", /^guest-initiated/);
      }
      const d = await send({ type: "vm.destroy", vmId: "pv-1", timeoutMs: 5_000 });
      assert.equal(d.outcome.type, "vm.destroyed");
    });

    it("runs each VM's server on its zone's own address and answers guestIp by the guest's MAC", async () => {
      await fx.illumos.addVnic("pvg10", "2:8:20:5:0:1");
      const vspec = { ...spec, network: { type: "vnic" as const, name: "pvg10" }, diskGb: 16 };
      for (const cmd of [
        { type: "vm.prepare", vmId: "pv-2", spec: vspec },
        { type: "vm.start", vmId: "pv-2" },
      ] as const) {
        const r = await send(cmd);
        assert.ok(
          ["vm.prepared", "vm.started"].includes(r.outcome.type),
          JSON.stringify(r.outcome),
        );
      }
      const view = await h.client.query("ill", "pv-2", "get");
      const addr = view.ok ? (view.vm.handle?.propolisAddr ?? "") : "";
      const [ip, port] = addr.split(":");
      const z = await fx.illumos.zone("vmq-pv-2");
      assert.ok(z);
      assert.ok(
        z.nets.some((n) => n.allowedAddress === `${ip ?? ""}/24`),
        `${addr} is the zone's own control address (${JSON.stringify(z.nets)})`,
      );
      assert.equal(Number(port), fx.range.port);
      assert.equal(fx.fakes.get("pv-2")?.addr, addr, "the server listens where the brand was told");
      assert.equal((await fx.illumos.dataset("rpool/vms/pv-2"))?.volsize, 16 * 2 ** 30);

      const none = await guestIp();
      assert.ok(!none.ok && none.error.code === "network::no-address", JSON.stringify(none));
      await fx.illumos.setNeighbours("vmq-pv-2", {
        arp: [
          `vmqc0 ${ip ?? ""} 255.255.255.255 SPLA 2:8:20:5:0:1`,
          "vmqc0 10.20.0.8 255.255.255.255 2:8:20:5:0:9",
          "vmqc0 10.20.0.7 255.255.255.255 2:8:20:5:0:1",
        ].join("\n"),
      });
      const found = await guestIp();
      assert.ok(found.ok && found.ip === "10.20.0.7", JSON.stringify(found));

      const small = await send({
        type: "vm.prepare",
        vmId: "pv-3",
        spec: { ...spec, diskGb: 1 },
      });
      assert.equal(small.outcome.type, "vm.command-failed");
      if (small.outcome.type === "vm.command-failed") {
        assert.equal(small.outcome.code, "image::disk-too-small");
      }
      const d = await send({ type: "vm.destroy", vmId: "pv-2", timeoutMs: 5_000 });
      assert.equal(d.outcome.type, "vm.destroyed");
      assert.deepEqual(await fx.illumos.vnics(), ["pvg10"], "the control vnic went with the VM");
    });
  },
);
