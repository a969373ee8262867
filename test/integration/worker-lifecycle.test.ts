import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { VmEvent } from "../../src/contracts/index.js";
import { Harness, SPEC, eventually } from "../helpers/worker-harness.js";

describe("worker: a VM's lifecycle from commands on NATS", () => {
  let h: Harness;
  before(async () => {
    h = await Harness.start();
    await h.worker();
  });
  after(async () => h.stop());

  it("prepare, start, suspend, resume, stop, start, stop, destroy: one intent and one outcome each, in order", async () => {
    const steps: [Parameters<typeof h.client.send>[1], VmEvent["type"], string][] = [
      [{ type: "vm.prepare", vmId: "life-1", spec: SPEC }, "vm.prepared", "prepared"],
      [{ type: "vm.start", vmId: "life-1" }, "vm.started", "running"],
      [{ type: "vm.suspend", vmId: "life-1" }, "vm.suspended", "suspended"],
      [{ type: "vm.resume", vmId: "life-1" }, "vm.resumed", "running"],
      [{ type: "vm.stop", vmId: "life-1", timeoutMs: 5000 }, "vm.stopped", "stopped"],
      [{ type: "vm.start", vmId: "life-1" }, "vm.started", "running"],
      [{ type: "vm.stop", vmId: "life-1", correlationId: "deploy-7" }, "vm.stopped", "stopped"],
      [{ type: "vm.destroy", vmId: "life-1" }, "vm.destroyed", "destroyed"],
    ];
    const ids: string[] = [];
    for (const [cmd, type, state] of steps) {
      const r = await h.client.send("h1", cmd);
      assert.equal(r.outcome.type, type, `${cmd.type} -> ${type}`);
      assert.equal(r.outcome.state, state);
      assert.ok(r.accepted, "the intent came before the outcome");
      ids.push(r.commandId);
    }
    const history = await h.client.history("h1", "life-1");
    assert.equal(history.length, steps.length * 2);
    history.forEach(({ event }, i) => {
      assert.equal(event.causationId, ids[Math.floor(i / 2)]);
      assert.equal(event.type === "vm.command-accepted", i % 2 === 0);
      assert.equal(event.host, "h1");
    });
    const stop2 = history[13]?.event;
    assert.equal(stop2?.type, "vm.stopped");
    assert.equal(stop2?.correlationId, "deploy-7");
    if (stop2?.type === "vm.stopped") assert.equal(stop2.how, "acpi");
    const seqs = history.map((e) => e.seq);
    assert.deepEqual(
      seqs,
      [...seqs].sort((a, b) => a - b),
    );
    const view = await eventually(async () => {
      const v = await h.client.get("life-1");
      return v?.state === "destroyed" ? v : undefined;
    });
    assert.equal(view.lastEventSeq, seqs.at(-1));
    assert.equal(view.pending, null);
  });

  it("rejects an illegal transition with the current and allowed states, and keeps going", async () => {
    await h.client.send("h1", { type: "vm.prepare", vmId: "illegal-1", spec: SPEC });
    const r = await h.client.send("h1", { type: "vm.suspend", vmId: "illegal-1" });
    assert.equal(r.outcome.type, "vm.command-rejected");
    assert.equal(r.accepted, false, "a rejected command never records an intent");
    if (r.outcome.type === "vm.command-rejected") {
      assert.equal(r.outcome.code, "command::illegal-transition");
      assert.match(r.outcome.message, /prepared/);
      assert.match(r.outcome.message, /running/);
    }
    const ok = await h.client.send("h1", { type: "vm.start", vmId: "illegal-1" });
    assert.equal(ok.outcome.type, "vm.started");
  });

  it("rejects a stale expectedVersion with command::version-conflict", async () => {
    const p = await h.client.send("h1", { type: "vm.prepare", vmId: "occ-1", spec: SPEC });
    const stale = await h.client.send("h1", {
      type: "vm.start",
      vmId: "occ-1",
      expectedVersion: p.outcomeSeq - 1,
    });
    assert.equal(stale.outcome.type, "vm.command-rejected");
    if (stale.outcome.type === "vm.command-rejected")
      assert.equal(stale.outcome.code, "command::version-conflict");
    const fresh = await h.client.send("h1", {
      type: "vm.start",
      vmId: "occ-1",
      expectedVersion: stale.outcomeSeq,
    });
    assert.equal(fresh.outcome.type, "vm.started");
  });

  it("answers live queries, and vm::not-found for an unknown VM", async () => {
    await h.client.send("h1", { type: "vm.prepare", vmId: "q-1", spec: SPEC });
    await h.client.send("h1", { type: "vm.start", vmId: "q-1" });
    const get = await h.client.query("h1", "q-1", "get");
    assert.ok(get.ok && get.vm.state === "running");
    const state = await h.client.query("h1", "q-1", "state");
    assert.ok(state.ok && state.state === "running" && state.recorded === "running");
    const ip = await h.client.query("h1", "q-1", "guest-ip");
    assert.ok(ip.ok && ip.ip === "127.0.0.1");
    const con = await h.client.query("h1", "q-1", "console");
    assert.ok(con.ok && con.console.type === "none");
    const missing = await h.client.query("h1", "nope", "get");
    assert.ok(!missing.ok);
    assert.equal(missing.error.code, "vm::not-found");
  });

  it("heartbeats a host record with backends, capabilities and counts", async () => {
    const rec = await eventually(async () =>
      (await h.client.hosts()).find((x) => x.host === "h1" && x.vmCount > 0),
    );
    assert.deepEqual(rec.backends, ["noop"]);
    assert.equal(rec.state, "running");
    assert.equal(rec.capabilities.noop?.suspend, true);
  });

  it("rejects a prepare for a backend this worker does not have, touching nothing", async () => {
    const r = await h.client.send("h1", {
      type: "vm.prepare",
      vmId: "nobackend-1",
      spec: { ...SPEC, backend: "qemu" },
    });
    assert.equal(r.outcome.type, "vm.command-rejected");
    if (r.outcome.type === "vm.command-rejected") {
      assert.equal(r.outcome.code, "hypervisor::backend-unavailable");
      assert.match(r.outcome.message, /qemu/);
    }
    assert.equal(await h.client.get("nobackend-1"), undefined, "no VM came of it");
  });

  it("refuses to prepare a vmId that is alive, and allows it again once destroyed", async () => {
    await h.client.send("h1", { type: "vm.prepare", vmId: "dup-1", spec: SPEC });
    const again = await h.client.send("h1", { type: "vm.prepare", vmId: "dup-1", spec: SPEC });
    assert.equal(again.outcome.type, "vm.command-rejected");
    if (again.outcome.type === "vm.command-rejected")
      assert.equal(again.outcome.code, "vm::exists");
    await h.client.send("h1", { type: "vm.destroy", vmId: "dup-1" });
    const reborn = await h.client.send("h1", { type: "vm.prepare", vmId: "dup-1", spec: SPEC });
    assert.equal(reborn.outcome.type, "vm.prepared");
  });
});
