/**
 * The command pipeline and the VM's order: held commands a dead worker left behind, the
 * delays behind a command sent back, the last delivery given up (on in-memory parts).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type VmEvent } from "../../../src/contracts/index.js";
import { VmqError } from "../../../src/lib/errors.js";
import { command, HOST } from "../../helpers/pipeline-fixture.js";

import { ACK, build, enc, field, HeldLog, names, prepare } from "../../helpers/pipeline-spy.js";

describe("held commands and the VM's order", () => {
  /** A previous worker delivered the VM's prepare (seq 1) and start (seq 2) and died. */
  function heldPrepare() {
    const log = new HeldLog();
    const t = build({ log });
    const p = prepare("a");
    const s = command({ type: "vm.start", vmId: "a" });
    for (const [seq, c] of [
      [1, p],
      [2, s],
    ] as const)
      log.messages.push({
        seq,
        subject: names.cmd(HOST, "a"),
        data: enc.encode(JSON.stringify(c)),
      });
    return { t, p, s };
  }

  it("an earlier command a dead worker held runs first, once; its own delivery is then a duplicate", async () => {
    const { t, p, s } = heldPrepare();
    await t.order.open();
    assert.deepEqual(await t.handle(s, { seq: 2 }), ACK);
    assert.deepEqual(await t.types("a"), [
      "vm.command-accepted",
      "vm.prepared",
      "vm.command-accepted",
      "vm.started",
    ]);
    assert.equal(t.stats.reordered, 1);
    assert.equal(t.stats.redeliveries, 1, "the one run ahead counts as a redelivery");
    assert.deepEqual(await t.handle(p, { seq: 1, delivery: 2 }), ACK);
    assert.equal(t.stats.duplicates, 1);
    assert.deepEqual(t.router.ops(), ["prepare", "start"]);
  });

  it("the VM is reloaded from its stream before anything runs again", async () => {
    const { t, p, s } = heldPrepare();
    // The dead worker recorded the prepare's outcome; this process has not seen it.
    for (const e of [
      {
        type: "vm.command-accepted",
        state: "preparing",
        suffix: "accepted",
        command: p,
        deadline: new Date(Date.now() + 60_000).toISOString(),
      },
      {
        type: "vm.prepared",
        state: "prepared",
        suffix: "outcome",
        handle: { id: "a", name: "web", backend: "noop", workDir: "noop://a" },
      },
    ]) {
      const { suffix, ...rest } = e;
      const last = (await t.store.readVm(HOST, "a")).at(-1)?.seq ?? 0;
      await t.store.inner.append(
        {
          version: 1,
          eventId: `a:${p.commandId}:${suffix}`,
          vmId: "a",
          host: HOST,
          at: new Date().toISOString(),
          causationId: p.commandId,
          correlationId: null,
          ...rest,
        } as VmEvent,
        last,
      );
    }
    t.noop.inner.seed(
      {
        id: "a",
        name: "web",
        backend: "noop",
        workDir: "noop://a",
        vcpus: 1,
        memoryMb: 256,
        network: { type: "user" },
        uefi: false,
      },
      "prepared",
    );
    await t.order.open();
    assert.deepEqual(await t.handle(s, { seq: 2 }), ACK);
    assert.equal(t.stats.reordered, 0, "nothing to run ahead once the stream is read");
    assert.equal(t.stats.conflicts, 0);
    assert.deepEqual(t.router.ops(), ["start"]);
    assert.deepEqual(t.changes.filter(([, c]) => c === "reloaded").length, 1);
  });

  it("a held command already run ahead once is waited for, with a backoff", async () => {
    const { t, s } = heldPrepare();
    await t.order.open();
    assert.equal(t.order.firstTry(1), true); // this process ran it ahead before
    const first = await t.handle(s, { seq: 2 });
    assert.equal(first.kind, "nak");
    assert.ok(
      first.kind === "nak" && first.delayMs >= 500 && first.delayMs <= 1_000,
      JSON.stringify(first),
    );
    const later = await t.handle(s, { seq: 2, delivery: 3 });
    assert.ok(
      later.kind === "nak" && later.delayMs >= 2_000 && later.delayMs <= 4_000,
      JSON.stringify(later),
    );
    assert.deepEqual(t.router.ops(), []);
  });

  it("behind a command sent back, a later one comes back just after it is due, without a reload", async () => {
    const t = build();
    await t.handle(prepare("a"));
    t.store.failWith = new VmqError("event-store::append-failed", "NATS away", { retryable: true });
    const start = command({ type: "vm.start", vmId: "a" });
    const sent = await t.handle(start, { seq: 10, delivery: 4 }); // 4th delivery: 4-8 s
    t.store.failWith = undefined;
    assert.equal(sent.kind, "nak");
    const reloads = t.changes.filter(([, c]) => c === "reloaded").length;
    const stop = command({ type: "vm.stop", vmId: "a" });
    const behind = await t.handle(stop, { seq: 11 });
    assert.ok(sent.kind === "nak" && behind.kind === "nak", JSON.stringify([sent, behind]));
    if (sent.kind !== "nak" || behind.kind !== "nak") return;
    const expected = sent.delayMs + 250;
    assert.ok(
      behind.delayMs <= expected && behind.delayMs > expected - 100,
      `${behind.delayMs} vs ${expected}`,
    );
    assert.equal(t.changes.filter(([, c]) => c === "reloaded").length, reloads);
  });

  it("behind one sent back without a due time, the backoff of its own delivery", async () => {
    const t = build();
    const first = command({ type: "vm.start", vmId: "a" });
    t.order.defer({
      seq: 1,
      subject: names.cmd(HOST, "a"),
      data: new Uint8Array(),
      command: first,
    });
    const s = await t.handle(command({ type: "vm.stop", vmId: "a" }), { seq: 2, delivery: 3 });
    assert.ok(s.kind === "nak" && s.delayMs >= 2_000 && s.delayMs <= 4_000, JSON.stringify(s));
  });

  it("the wait behind a command sent back is capped at 30 s", async () => {
    const t = build();
    const first = command({ type: "vm.start", vmId: "a" });
    t.order.defer({
      seq: 1,
      subject: names.cmd(HOST, "a"),
      data: new Uint8Array(),
      command: first,
      retryAt: Date.now() + 120_000,
    });
    const s = await t.handle(command({ type: "vm.stop", vmId: "a" }), { seq: 2 });
    assert.deepEqual(s, { kind: "nak", delayMs: 30_000 });
  });

  it("a command given up on its last delivery stops holding the VM's later ones", async () => {
    const t = build({ maxDeliver: 3 });
    await t.handle(prepare("a"));
    t.store.failWith = new VmqError("event-store::append-failed", "NATS away", { retryable: true });
    const start = command({ type: "vm.start", vmId: "a" });
    assert.equal((await t.handle(start, { seq: 10, delivery: 2 })).kind, "nak");
    assert.equal(t.order.waiting, 1);
    assert.deepEqual(await t.handle(start, { seq: 10, delivery: 3 }), { kind: "term" });
    assert.equal(t.order.waiting, 0);
    assert.equal(t.order.mayHaveEarlier("a"), false);
  });

  it("a drain's abandon sends nothing to the order gate", async () => {
    const t = build();
    await t.handle(prepare("a"));
    await t.handle(command({ type: "vm.start", vmId: "a" }));
    t.noop.hangStop(true, "a");
    const stop = t.handle(
      command({ type: "vm.stop", vmId: "a", timeoutMs: 60_000, force: "never" }),
    );
    await new Promise((r) => setTimeout(r, 50));
    t.abandon.abort(new Error("drained"));
    assert.deepEqual(await stop, { kind: "abandon" });
    assert.equal(t.order.waiting, 0);
  });
});

describe("giving up on the last delivery", () => {
  it("dead-letters the command with its last error, and records the failure for good", async () => {
    const t = build({ maxDeliver: 3 });
    t.store.failWith = new VmqError("event-store::append-failed", "NATS away", { retryable: true });
    // NATS is back by the time the dead letter is written: the failure event lands.
    t.dlq.onPut = () => (t.store.failWith = undefined);
    const c = prepare("a");
    assert.deepEqual(await t.handle(c, { delivery: 3, seq: 5 }), { kind: "term" });
    const dl = t.deadLetters[0];
    assert.equal(dl?.code, "command::max-deliveries");
    assert.equal(dl?.reason, "gave up after 3 deliveries");
    assert.equal(dl?.lastError, "NATS away");
    assert.equal(dl?.streamSeq, 5);
    assert.equal(t.stats.deadLettered, 1);
    const [failed] = await t.events("a");
    assert.equal(failed?.type, "vm.command-failed");
    assert.equal(field(failed, "code"), "command::max-deliveries");
    assert.equal(field(failed, "message"), "gave up after 3 deliveries (NATS away); see the DLQ");
    assert.equal(field(failed, "retryable"), false);
    assert.equal(field(failed, "attempt"), 3);
  });
});
