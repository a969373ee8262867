import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Worker } from "../../src/worker/worker.js";
import { Harness, SPEC, eventually, type TestNoop } from "../helpers/worker-harness.js";

describe("fault: backends that hang, crawl or fail", { timeout: 120_000 }, () => {
  let h: Harness;
  let noop: TestNoop;
  let worker: Worker;
  before(async () => {
    h = await Harness.start();
    ({ noop, worker } = await h.worker({
      host: "fb",
      ackWaitMs: 1_000,
      maxAttempts: 3,
      http: "127.0.0.1:0",
    }));
  });
  after(async () => h.stop());

  it("a hung stop: force never fails with the timeout recorded and the VM running; after-timeout escalates", async () => {
    await h.client.send("fb", { type: "vm.prepare", vmId: "hung", spec: SPEC });
    await h.client.send("fb", { type: "vm.start", vmId: "hung" });
    noop.hangStop(true, "hung");
    const never = await h.client.send("fb", {
      type: "vm.stop",
      vmId: "hung",
      timeoutMs: 300,
      force: "never",
    });
    assert.equal(never.outcome.type, "vm.command-failed");
    if (never.outcome.type === "vm.command-failed") {
      assert.equal(never.outcome.code, "hypervisor::stop-timeout");
      assert.equal(never.outcome.state, "running");
    }
    const esc = await h.client.send("fb", { type: "vm.stop", vmId: "hung", timeoutMs: 300 });
    assert.equal(esc.outcome.type, "vm.stopped");
    if (esc.outcome.type === "vm.stopped")
      assert.equal(esc.outcome.how, "sigterm", "the escalation step is recorded");
  });

  it("a slow backend: working() keeps the message, no redelivery storm, one outcome", async () => {
    await h.client.send("fb", { type: "vm.prepare", vmId: "slow", spec: SPEC });
    const before = worker.stats.redeliveries;
    noop.latencyMs = 3_500; // 3.5x the ack wait
    try {
      const r = await h.client.send(
        "fb",
        { type: "vm.start", vmId: "slow" },
        { timeoutMs: 30_000 },
      );
      assert.equal(r.outcome.type, "vm.started");
    } finally {
      noop.latencyMs = 0;
    }
    assert.equal(worker.stats.redeliveries - before, 0, "no redelivery while the backend worked");
    const hist = await h.client.history("fb", "slow");
    assert.equal(hist.filter((e) => e.event.type === "vm.started").length, 1);
  });

  it("transient failures are retried with backoff; permanent ones are recorded once, never retried", async () => {
    await h.client.send("fb", { type: "vm.prepare", vmId: "flaky", spec: SPEC });
    noop.failNext(2, "hypervisor::timeout", { ops: ["start"], retryable: true });
    const ok = await h.client.send("fb", { type: "vm.start", vmId: "flaky" });
    assert.equal(ok.outcome.type, "vm.started", "third attempt succeeded");
    const calls = noop.calls.filter((c) => c.vmId === "flaky" && c.op === "suspend").length;
    noop.failNext(1, "hypervisor::invalid-state", { ops: ["suspend"], retryable: false });
    const bad = await h.client.send("fb", { type: "vm.suspend", vmId: "flaky" });
    assert.equal(bad.outcome.type, "vm.command-failed");
    if (bad.outcome.type === "vm.command-failed") {
      assert.equal(bad.outcome.retryable, false);
      assert.equal(bad.outcome.attempt, 1);
    }
    assert.equal(
      noop.calls.filter((c) => c.vmId === "flaky" && c.op === "suspend").length - calls,
      1,
      "tried once",
    );
  });

  it("a transient failure that outlasts a delivery's attempts goes back to the stream and is retried by redelivery", async () => {
    await h.client.send("fb", { type: "vm.prepare", vmId: "outage", spec: SPEC });
    const retried = worker.stats.retried;
    const redelivered = worker.stats.redeliveries;
    // maxAttempts is 3 per delivery: the first delivery fails three times, the second gets on.
    noop.failNext(4, "hypervisor::timeout", { ops: ["start"], retryable: true });
    const start = await h.client.publish("fb", { type: "vm.start", vmId: "outage" });
    // The VM's next command arrives while the start is back in the stream: it waits for it.
    const suspend = await h.client.publish("fb", { type: "vm.suspend", vmId: "outage" });
    const r = await h.client.waitForOutcome("fb", "outage", start.command.commandId, {
      timeoutMs: 30_000,
    });
    assert.equal(r.outcome.type, "vm.started");
    const s2 = await h.client.waitForOutcome("fb", "outage", suspend.command.commandId, {
      timeoutMs: 30_000,
    });
    assert.equal(s2.outcome.type, "vm.suspended", "the later command ran after the earlier one");
    assert.ok(s2.outcomeSeq > r.outcomeSeq);
    assert.equal(worker.stats.retried - retried, 1, "sent back once (nak with a delay)");
    const redeliveries = worker.stats.redeliveries - redelivered;
    assert.ok(redeliveries >= 1, "and delivered again");
    // The waiting suspend comes back once, just after the start is due (not on a growing
    // backoff of its own): a few redeliveries in all, not a convoy.
    assert.ok(redeliveries <= 4, `${redeliveries} redeliveries`);
    const events = (await h.client.history("fb", "outage")).filter(
      (e) => e.event.causationId === start.command.commandId,
    );
    assert.deepEqual(
      events.map((e) => e.event.type),
      ["vm.command-accepted", "vm.started"],
      "one intent, one outcome",
    );
    // Both were sent back once; with their outcomes recorded, nothing is left waiting.
    await eventually(
      async () => {
        const m = await (await fetch(`http://127.0.0.1:${worker.httpPort}/metrics`)).text();
        return /^vmq_commands_waiting 0$/m.test(m) ? true : undefined;
      },
      10_000,
      "vmq_commands_waiting 0",
    );
  });
});
