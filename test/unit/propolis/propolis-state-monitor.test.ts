import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { setTimeout as delay } from "node:timers/promises";
import type { VmSpec } from "../../../src/contracts/index.js";
import type { ObservedChange } from "../../../src/hypervisor/index.js";
import { PropolisClient } from "../../../src/hypervisor/backends/propolis/propolis-client.js";
import { buildEnsureRequest } from "../../../src/hypervisor/backends/propolis/propolis-spec.js";
import {
  PropolisStateMonitor,
  type MonitorUpdate,
} from "../../../src/hypervisor/backends/propolis/propolis-state-monitor.js";
import { FakePropolisServer } from "../../helpers/fake-propolis/fake-propolis-server.js";
import { makePropolisFixture } from "../../helpers/fake-propolis/propolis-fixture.js";

const ensureBody = buildEnsureRequest({
  vmId: "m1",
  name: "m1",
  vcpus: 1,
  memoryMb: 256,
  diskPath: "/dev/zvol/rdsk/rpool/vms/m1",
});

const spec: VmSpec = {
  name: "mon",
  imagePath: "base",
  vcpus: 1,
  memoryMb: 256,
  network: { type: "none" },
  uefi: false,
};

async function until(cond: () => boolean, what: string, ms = 3_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await delay(10);
  }
}

describe("PropolisStateMonitor", () => {
  const fakes: FakePropolisServer[] = [];
  const monitors: PropolisStateMonitor[] = [];
  after(async () => {
    await Promise.all(monitors.map((m) => m.stop()));
    await Promise.all(fakes.map((f) => f.close()));
  });
  const setup = async (manual = false) => {
    const f = await FakePropolisServer.start({ stepMs: 5, manual });
    fakes.push(f);
    const c = new PropolisClient(f.addr);
    const updates: MonitorUpdate[] = [];
    const m = new PropolisStateMonitor(c, {
      onUpdate: (u) => updates.push(u),
      backoffBaseMs: 10,
      backoffCapMs: 50,
    });
    monitors.push(m);
    return { f, c, m, updates };
  };

  it("asks for last_seen_gen + 1 and reports each state it sees", async () => {
    const { f, c, m, updates } = await setup(true);
    await c.ensure(ensureBody);
    m.start();
    await m.waitFor((s) => s === "Creating");
    await c.requestState("Run"); // Starting is published at once; Running waits for advance()
    await m.waitFor((s) => s === "Starting");
    await until(() => f.monitorWaiters === 1, "the poll for gen 3");
    assert.ok(f.advance());
    assert.equal(await m.waitFor((s) => s === "Running"), "Running");
    const gens = f.requests
      .filter((r) => r.path === "/instance/state-monitor")
      .map((r) => (r.body as { gen: number }).gen);
    assert.equal(gens[0], 1, "starts with a resync at gen 1");
    for (let i = 1; i < gens.length; i++)
      assert.equal(gens[i], (gens[i - 1] ?? 0) + 1, `gens ${gens.join(",")}`);
    assert.deepEqual(
      updates.map((u) => u.state),
      ["Creating", "Starting", "Running"],
    );
  });

  it("survives dropped monitor connections and a dead server, then resumes", async () => {
    const { f, c, m, updates } = await setup();
    await c.ensure(ensureBody);
    m.start();
    await m.waitFor((s) => s === "Creating");
    await until(() => f.monitorWaiters === 1, "a parked poll");
    f.dropMonitorConnections();
    // m.failures is back to 0 as soon as a retry gets through (10-50 ms later), so a poll of
    // it can miss the failure on a busy machine. The resync that follows stays on record.
    const resyncs = () =>
      f.requests.filter(
        (r) => r.path === "/instance/state-monitor" && (r.body as { gen: number }).gen === 1,
      ).length;
    await until(() => resyncs() >= 2, "the monitor noticing the drop (it resyncs from gen 1)");
    await c.requestState("Run");
    assert.equal(await m.waitFor((s) => s === "Running"), "Running");
    assert.equal(updates.at(-1)?.state, "Running");
    assert.equal(m.failures, 0);
  });

  it("starts a new epoch when the generation restarts under it (re-ensure by someone else)", async () => {
    const { c, m, updates } = await setup();
    await c.ensure(ensureBody);
    m.start();
    await c.requestState("Run");
    await m.waitFor((s) => s === "Running");
    await c.requestState("Stop");
    await m.waitFor((s) => s === "Destroyed");
    const before = m.epoch;
    await c.ensure(ensureBody); // the pending poll gets 410, the resync sees gen 1 < last
    await m.waitFor((s) => s === "Creating");
    assert.ok(m.epoch > before, "epoch bumped");
    const last = updates.at(-1);
    assert.equal(last?.state, "Creating");
    assert.equal(last?.previous, undefined, "no previous state across epochs");
  });
});

describe("PropolisBackend observed changes", () => {
  it("reports guest halt and guest reboot, but not its own start and stop", async () => {
    const fx = await makePropolisFixture();
    try {
      const changes: ObservedChange[] = [];
      fx.backend.watch((c) => changes.push(c));
      const h = await fx.backend.start(await fx.backend.prepare("obs-1", spec));
      const fake = fx.fakes.get("obs-1");
      assert.ok(fake);
      await delay(50);
      assert.equal(changes.length, 0, "our own start is not an observed change");

      fake.guestReset();
      await until(() => changes.length === 1, "the reboot");
      assert.equal(changes[0]?.state, "running");
      assert.equal(changes[0]?.guestInitiated, true);
      assert.equal(changes[0]?.source, "propolis");
      await until(() => fake.state === "Running", "running again");

      fake.guestHalt();
      await until(() => changes.length === 2, "the guest halt");
      assert.equal(changes[1]?.state, "stopped");
      assert.equal(changes[1]?.guestInitiated, true);
      await until(() => fake.state === "Destroyed", "teardown");
      await delay(50);
      assert.equal(changes.length, 2, "Stopped and Destroyed make one halt");
      assert.equal(await fx.backend.state(h), "stopped");

      // Our own stop of a restarted VM is not observed.
      const again = await fx.backend.start(h);
      assert.equal(fake.gen >= 3, true);
      const r = await fx.backend.stop(again, { timeoutMs: 2_000, force: "after-timeout" });
      assert.equal(
        r.how,
        "forced",
        "Propolis Stop is a hard halt: never reported as acpi or sigterm",
      );
      await until(() => fake.state === "Destroyed", "teardown");
      await delay(50);
      assert.equal(changes.length, 2);
      await fx.backend.destroy(r.handle, { timeoutMs: 1_000, force: "after-timeout" });
    } finally {
      await fx.cleanup();
    }
  });

  it("adopt re-attaches a new backend's monitor to a running VM", async () => {
    const fx = await makePropolisFixture();
    const { PropolisBackend } = await import("../../../src/hypervisor/backends/propolis/index.js");
    const second = new PropolisBackend({
      runnerOptions: fx.illumos.runnerOptions,
      workRoot: fx.illumos.workRoot,
      monitorBackoffBaseMs: 10,
    });
    try {
      const h = await fx.backend.start(await fx.backend.prepare("adopt-1", spec));
      await fx.backend.close(); // the worker went away; the VM keeps running
      const changes: ObservedChange[] = [];
      second.watch((c) => changes.push(c));
      await second.adopt(h);
      assert.equal(await second.state(h), "running");
      await delay(50);
      fx.fakes.get("adopt-1")?.guestHalt();
      await until(() => changes.length === 1, "the halt seen by the adopting backend");
      assert.equal(changes[0]?.guestInitiated, true);
    } finally {
      await second.close();
      await fx.cleanup();
    }
  });
});
