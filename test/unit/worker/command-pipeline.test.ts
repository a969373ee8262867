/**
 * The command pipeline without a nats-server: every settlement path (ack, term, nak, abandon),
 * a conflict with another writer, a passed deadline, transient and permanent backend errors,
 * recording failures, and the VM's order behind a command sent back.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { VmEvent } from "../../../src/contracts/index.js";
import { VmqError } from "../../../src/lib/errors.js";
import { command, HOST, pipeline, SPEC } from "../../helpers/pipeline-fixture.js";

const prepare = (vmId: string) => command({ type: "vm.prepare", vmId, spec: SPEC });

async function prepared(p: ReturnType<typeof pipeline>, vmId: string): Promise<void> {
  assert.deepEqual(await p.handler.handle(p.message(prepare(vmId))), { kind: "ack" });
}

describe("command pipeline: settlements", () => {
  it("a valid command: intent, one backend call, outcome, ack", async () => {
    const p = pipeline();
    const c = prepare("a");
    assert.deepEqual(await p.handler.handle(p.message(c)), { kind: "ack" });
    assert.deepEqual(await p.history("a"), ["vm.command-accepted", "vm.prepared"]);
    assert.deepEqual(p.effects(), ["prepare:a"]);
    assert.equal(p.streams.get("a").state, "prepared");
    assert.equal(p.stats.total("succeeded"), 1);
  });

  it("the same command again (a redelivery after its outcome): ack, no effect, no event", async () => {
    const p = pipeline();
    const c = prepare("a");
    await p.handler.handle(p.message(c));
    const again = await p.handler.handle(p.message(c, { delivery: 2 }));
    assert.deepEqual(again, { kind: "ack" });
    assert.deepEqual(await p.history("a"), ["vm.command-accepted", "vm.prepared"]);
    assert.deepEqual(p.effects(), ["prepare:a"]);
    assert.equal(p.stats.duplicates, 1);
    assert.equal(p.stats.redeliveries, 1);
  });

  it("a command the decider rejects: the rejection is recorded, nothing runs, ack", async () => {
    const p = pipeline();
    const s = await p.handler.handle(p.message(command({ type: "vm.start", vmId: "ghost" })));
    assert.deepEqual(s, { kind: "ack" });
    const [e] = await p.store.readVm(HOST, "ghost");
    assert.equal(e?.event.type, "vm.command-rejected");
    assert.equal((e?.event as Extract<VmEvent, { code: string }>).code, "vm::not-found");
    assert.deepEqual(p.effects(), []);
    assert.equal(p.stats.total("rejected"), 1);
  });

  it("refusals only the host knows: a backend it lacks, a vmId another host holds", async () => {
    const p = pipeline();
    const noBackend = command({
      type: "vm.prepare",
      vmId: "q",
      spec: { ...SPEC, backend: "qemu" },
    });
    assert.deepEqual(await p.handler.handle(p.message(noBackend)), { kind: "ack" });
    const [e] = await p.store.readVm(HOST, "q");
    assert.equal((e?.event as { code?: string }).code, "hypervisor::backend-unavailable");
    const elsewhere = pipeline({ ownerElsewhere: "h2" });
    await elsewhere.handler.handle(elsewhere.message(prepare("taken")));
    const [t] = await elsewhere.store.readVm(HOST, "taken");
    assert.equal((t?.event as { code?: string }).code, "vm::exists");
    assert.deepEqual(
      [...p.effects(), ...elsewhere.effects()],
      [],
      "a refused command touches nothing",
    );
  });

  it("bad input: rejected when its vmId is valid, dead-lettered, and terminated", async () => {
    const p = pipeline();
    const s = await p.handler.handle(p.message(new TextEncoder().encode("{oops"), { vmId: "bad" }));
    assert.deepEqual(s, { kind: "term" });
    assert.deepEqual(await p.history("bad"), ["vm.command-rejected"]);
    assert.equal(p.deadLetters.length, 1);
    assert.equal(p.deadLetters[0]?.code, "command::not-json");
  });

  it("bad input whose DLQ copy cannot be written goes back to the stream with a delay", async () => {
    const p = pipeline();
    p.dlq.failing = true;
    const s = await p.handler.handle(p.message(new TextEncoder().encode("{oops"), { vmId: "bad" }));
    assert.equal(s.kind, "nak");
    assert.ok(s.kind === "nak" && s.delayMs >= 500 && s.delayMs <= 1_000, JSON.stringify(s));
    assert.equal(p.deadLetters.length, 0);
  });
});

describe("command pipeline: backend failures and the retry policy", () => {
  it("a transient failure is retried in the lane, and the command succeeds", async () => {
    const p = pipeline();
    await prepared(p, "a");
    p.noop.failNext(1, "hypervisor::injected", { ops: ["start"] });
    const s = await p.handler.handle(p.message(command({ type: "vm.start", vmId: "a" })));
    assert.deepEqual(s, { kind: "ack" });
    assert.equal(p.streams.get("a").state, "running");
    assert.deepEqual(p.effects(), ["prepare:a", "start:a", "start:a"]);
  });

  it("a transient failure that outlasts the attempts: nak with the intent kept; the redelivery resumes it", async () => {
    const p = pipeline({ maxAttempts: 2 });
    await prepared(p, "a");
    p.noop.failNext(2, "hypervisor::injected", { ops: ["start"] });
    const start = command({ type: "vm.start", vmId: "a" });
    const first = await p.handler.handle(p.message(start, { seq: 100 }));
    assert.equal(first.kind, "nak");
    assert.deepEqual(await p.history("a"), [
      "vm.command-accepted",
      "vm.prepared",
      "vm.command-accepted",
    ]);
    assert.equal(p.order.waiting, 1, "the VM's later commands wait for it");
    const stop = command({ type: "vm.stop", vmId: "a" });
    const later = await p.handler.handle(p.message(stop, { seq: 101 }));
    assert.equal(later.kind, "nak", "a later command of the VM goes back behind it");
    assert.deepEqual(await p.handler.handle(p.message(start, { seq: 100, delivery: 2 })), {
      kind: "ack",
    });
    assert.equal(p.streams.get("a").state, "running");
    assert.equal(p.order.waiting, 1, "the start is settled; only the stop behind it waits");
    assert.deepEqual(await p.handler.handle(p.message(stop, { seq: 101, delivery: 2 })), {
      kind: "ack",
    });
    assert.equal(p.order.waiting, 0);
    assert.equal(p.streams.get("a").state, "stopped");
    assert.equal(p.stats.retried, 1);
  });

  it("a permanent failure is recorded as vm.command-failed at once, and acked", async () => {
    const p = pipeline();
    await prepared(p, "a");
    p.noop.failNext(1, "hypervisor::failed", { retryable: false, ops: ["start"] });
    const s = await p.handler.handle(p.message(command({ type: "vm.start", vmId: "a" })));
    assert.deepEqual(s, { kind: "ack" });
    const last = (await p.store.readVm(HOST, "a")).at(-1)?.event;
    assert.equal(last?.type, "vm.command-failed");
    assert.equal((last as { code?: string }).code, "hypervisor::failed");
    assert.equal(p.streams.get("a").state, "prepared", "a failed start leaves the VM as it was");
    assert.deepEqual(p.effects(), ["prepare:a", "start:a"]);
  });

  it("on its last delivery a transient failure is recorded, not sent back again", async () => {
    const p = pipeline({ maxAttempts: 1, maxDeliver: 3 });
    await prepared(p, "a");
    p.noop.failNext(1, "hypervisor::injected", { ops: ["start"] });
    const s = await p.handler.handle(
      p.message(command({ type: "vm.start", vmId: "a" }), { delivery: 3 }),
    );
    assert.deepEqual(s, { kind: "ack" });
    const last = (await p.store.readVm(HOST, "a")).at(-1)?.event;
    assert.equal((last as { code?: string }).code, "hypervisor::injected");
  });

  it("a command whose deadline passed before its call fails with command::deadline-exceeded, touching nothing", async () => {
    const p = pipeline();
    await prepared(p, "a");
    // Accepted by a clock an hour behind: its deadline (accept time + the start budget) is past.
    p.setNow(new Date(Date.now() - 60 * 60_000));
    const s = await p.handler.handle(p.message(command({ type: "vm.start", vmId: "a" })));
    assert.deepEqual(s, { kind: "ack" });
    const last = (await p.store.readVm(HOST, "a")).at(-1)?.event;
    assert.equal(last?.type, "vm.command-failed");
    assert.equal((last as { code?: string }).code, "command::deadline-exceeded");
    assert.deepEqual(p.effects(), ["prepare:a"], "the backend was not called");
  });
});

describe("command pipeline: concurrency and recording failures", () => {
  it("another writer moves the VM on between decide and append: reload, decide again, one outcome", async () => {
    const p = pipeline();
    await prepared(p, "a");
    const start = command({ type: "vm.start", vmId: "a" });
    // The racing writer records the same start's intent first (another worker of this host).
    p.store.beforeNextAppend = async () => {
      const vm = p.streams.get("a");
      await p.store.inner.append(
        {
          type: "vm.state-observed",
          version: 1,
          eventId: "a:obs:racer",
          vmId: "a",
          host: HOST,
          at: new Date().toISOString(),
          causationId: null,
          correlationId: null,
          state: "prepared",
          observed: "prepared",
          previous: "prepared",
          source: "reconcile",
          detail: "racing writer",
        },
        vm.version,
      );
    };
    assert.deepEqual(await p.handler.handle(p.message(start)), { kind: "ack" });
    assert.equal(p.stats.conflicts, 1);
    assert.deepEqual(await p.history("a"), [
      "vm.command-accepted",
      "vm.prepared",
      "vm.state-observed",
      "vm.command-accepted",
      "vm.started",
    ]);
  });

  it("an intent that landed though its append seemed to fail: the redelivery finds it and resumes, one intent, one call", async () => {
    const p = pipeline();
    await prepared(p, "a");
    const start = command({ type: "vm.start", vmId: "a" });
    p.store.loseNextAck = true;
    assert.equal((await p.handler.handle(p.message(start, { seq: 40 }))).kind, "nak");
    assert.equal(p.streams.get("a").pending, null, "this process did not see its intent land");
    // The redelivery decides on a stale VM, meets its own intent in the stream, and reloads.
    assert.deepEqual(await p.handler.handle(p.message(start, { seq: 40, delivery: 2 })), {
      kind: "ack",
    });
    assert.deepEqual(await p.history("a"), [
      "vm.command-accepted",
      "vm.prepared",
      "vm.command-accepted",
      "vm.started",
    ]);
    assert.deepEqual(p.effects(), ["prepare:a", "start:a"]);
    assert.equal(p.stats.conflicts, 1);
  });

  it("NATS trouble while recording: nak with a growing delay, and the VM's view record is written again", async () => {
    const p = pipeline();
    p.store.failWith = new VmqError("event-store::append-failed", "NATS away", { retryable: true });
    const s1 = await p.handler.handle(p.message(prepare("a"), { seq: 7 }));
    const s4 = await p.handler.handle(p.message(prepare("b"), { seq: 8, delivery: 4 }));
    assert.equal(s1.kind, "nak");
    assert.equal(s4.kind, "nak");
    assert.ok(s1.kind === "nak" && s1.delayMs >= 500 && s1.delayMs <= 1_000, JSON.stringify(s1));
    assert.ok(s4.kind === "nak" && s4.delayMs >= 4_000 && s4.delayMs <= 8_000, JSON.stringify(s4));
    assert.deepEqual(p.refreshed, ["a", "b"]);
    assert.deepEqual(p.effects(), [], "nothing ran without its intent recorded");
  });

  it("recording fails on the last delivery: dead-lettered and terminated", async () => {
    const p = pipeline({ maxDeliver: 3 });
    p.store.failWith = new VmqError("event-store::append-failed", "NATS away", { retryable: true });
    const s = await p.handler.handle(p.message(prepare("a"), { delivery: 3 }));
    assert.deepEqual(s, { kind: "term" });
    assert.equal(p.deadLetters[0]?.code, "command::max-deliveries");
    assert.equal(p.deadLetters[0]?.attempts, 3);
  });

  it("recording fails on the last delivery and the DLQ is away too: left to JetStream (abandon)", async () => {
    const p = pipeline({ maxDeliver: 3 });
    p.store.failWith = new VmqError("event-store::append-failed", "NATS away", { retryable: true });
    p.dlq.failing = true;
    assert.deepEqual(await p.handler.handle(p.message(prepare("a"), { delivery: 3 })), {
      kind: "abandon",
    });
  });

  it("a drain that gives up on a running command abandons it with its intent recorded", async () => {
    const p = pipeline();
    await prepared(p, "a");
    p.noop.hangStop(true, "a");
    await p.handler.handle(p.message(command({ type: "vm.start", vmId: "a" })));
    const stop = p.handler.handle(
      p.message(command({ type: "vm.stop", vmId: "a", timeoutMs: 60_000, force: "never" })),
    );
    await new Promise((r) => setTimeout(r, 50));
    p.abandon.abort(new Error("drained"));
    assert.deepEqual(await stop, { kind: "abandon" });
    assert.equal((await p.history("a")).at(-1), "vm.command-accepted", "the intent stays");
  });
});
