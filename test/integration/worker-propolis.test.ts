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
  { timeout: 120_000 },
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

    it("drives a VM through its lifecycle from NATS commands, and refuses suspend as unsupported", async () => {
      const steps = [
        [{ type: "vm.prepare", vmId: "pv-1", spec }, "vm.prepared", "prepared"],
        [{ type: "vm.start", vmId: "pv-1" }, "vm.started", "running"],
        [{ type: "vm.stop", vmId: "pv-1", timeoutMs: 5_000 }, "vm.stopped", "stopped"],
        [{ type: "vm.start", vmId: "pv-1" }, "vm.started", "running"], // Stop is terminal in Propolis: start re-ensures
      ] as const;
      for (const [cmd, type, state] of steps) {
        const r = await h.client.send("ill", cmd);
        assert.equal(r.outcome.type, type, `${cmd.type}: ${JSON.stringify(r.outcome)}`);
        assert.equal(r.outcome.state, state);
      }
      const view = await h.client.query("ill", "pv-1", "console");
      assert.ok(
        view.ok && view.console.type === "websocket" && view.console.url.startsWith("ws://"),
      );
      const calls = (await fx.illumos.calls()).length;
      const s = await h.client.send("ill", { type: "vm.suspend", vmId: "pv-1" });
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
      const d = await h.client.send("ill", { type: "vm.destroy", vmId: "pv-1", timeoutMs: 5_000 });
      assert.equal(d.outcome.type, "vm.destroyed");
    });
  },
);
