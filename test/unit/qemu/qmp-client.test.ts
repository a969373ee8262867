import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { setTimeout as delay } from "node:timers/promises";
import { QmpClient, type QmpEvent } from "../../../src/hypervisor/backends/qemu/qmp-client.js";
import { isVmqError } from "../../../src/lib/errors.js";
import { FakeQmp } from "../../helpers/fake-qmp.js";

async function until(cond: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await delay(10);
  }
}

describe("QmpClient against a fake QMP peer", () => {
  let fake: FakeQmp;
  before(async () => {
    fake = await FakeQmp.start();
  });
  after(async () => {
    await fake.stop();
  });

  it("negotiates capabilities and runs commands with ids", async () => {
    fake.on("query-status", { return: { status: "running", running: true } });
    const c = await QmpClient.connect(fake.path);
    try {
      const before = fake.handshakes;
      assert.ok(before >= 1);
      const [a, b] = await Promise.all([
        c.execute<{ status: string }>("query-status"),
        c.execute("system_powerdown"),
      ]);
      assert.equal(a.status, "running");
      assert.deepEqual(b, {});
      assert.deepEqual(
        fake.received.slice(-2).map((r) => r.execute),
        ["query-status", "system_powerdown"],
      );
    } finally {
      c.close();
    }
  });

  it("turns error replies into qemu::qmp-command-failed with the QMP class", async () => {
    fake.on("cont", { error: { class: "GenericError", desc: "guest is shut down" } });
    const c = await QmpClient.connect(fake.path);
    try {
      await assert.rejects(c.execute("cont"), (e: unknown) => {
        assert.ok(isVmqError(e, "qemu::qmp-command-failed"));
        assert.match(e.message, /guest is shut down/);
        assert.equal(e.details?.class, "GenericError");
        return true;
      });
      // The connection still works after an error reply.
      assert.deepEqual(await c.execute("stop"), {});
    } finally {
      c.close();
    }
  });

  it("times out a command that gets no answer", async () => {
    fake.on("query-vnc", "silence");
    const c = await QmpClient.connect(fake.path);
    try {
      const began = Date.now();
      await assert.rejects(c.execute("query-vnc", undefined, { timeoutMs: 150 }), (e: unknown) =>
        isVmqError(e, "hypervisor::timeout"),
      );
      assert.ok(Date.now() - began >= 140);
    } finally {
      c.close();
    }
  });

  it("delivers asynchronous events to listeners, interleaved with replies", async () => {
    const c = await QmpClient.connect(fake.path);
    const seen: QmpEvent[] = [];
    const off = c.onEvent((e) => seen.push(e));
    try {
      fake.emit("STOP");
      fake.emit("SHUTDOWN", { guest: true, reason: "guest-shutdown" });
      assert.deepEqual(await c.execute("query-name"), {});
      await until(() => seen.length === 2);
      assert.equal(seen[0]?.event, "STOP");
      assert.deepEqual(seen[1]?.data, { guest: true, reason: "guest-shutdown" });
      off();
      fake.emit("RESUME");
      await c.execute("query-status");
      assert.equal(seen.length, 2, "an unsubscribed listener hears nothing");
    } finally {
      c.close();
    }
  });

  it("reconnects after the socket drops while the VM lives, failing in-flight commands", async () => {
    fake.on("query-cpus-fast", "silence");
    const c = await QmpClient.connect(fake.path, {
      shouldReconnect: () => true,
      reconnectBaseMs: 20,
    });
    let disconnects = 0;
    let reconnects = 0;
    c.onDisconnect(() => disconnects++);
    c.onReconnect(() => reconnects++);
    try {
      const inflight = c.execute("query-cpus-fast", undefined, { timeoutMs: 5000 });
      await until(() => fake.received.some((r) => r.execute === "query-cpus-fast"));
      fake.dropConnections();
      await assert.rejects(inflight, (e: unknown) => isVmqError(e, "qemu::qmp-connect-failed"));
      await until(() => reconnects === 1);
      assert.equal(disconnects, 1);
      fake.on("query-status", { return: { status: "paused" } });
      assert.deepEqual(await c.execute("query-status"), { status: "paused" });
      // Events still flow on the new connection.
      const seen: string[] = [];
      c.onEvent((e) => seen.push(e.event));
      fake.emit("RESET", { guest: true });
      await until(() => seen.includes("RESET"));
    } finally {
      c.close();
    }
  });

  it("retries while the peer is away, then reconnects when it comes back", async () => {
    const c = await QmpClient.connect(fake.path, {
      shouldReconnect: () => true,
      reconnectBaseMs: 50,
      maxReconnectAttempts: 20,
    });
    let reconnects = 0;
    c.onReconnect(() => reconnects++);
    try {
      await fake.goAway();
      await delay(200);
      assert.equal(c.connected, false);
      await fake.listen();
      await until(() => reconnects === 1, 5000);
      assert.equal(c.connected, true);
    } finally {
      c.close();
    }
  });

  it("closes for good when the VM is gone (shouldReconnect false)", async () => {
    const c = await QmpClient.connect(fake.path, { shouldReconnect: () => false });
    let closed = 0;
    c.onClose(() => closed++);
    fake.dropConnections();
    await until(() => closed === 1);
    assert.equal(c.connected, false);
    await assert.rejects(c.execute("query-status"), (e: unknown) =>
      isVmqError(e, "qemu::qmp-connect-failed"),
    );
  });

  it("fails to connect with qemu::qmp-connect-failed when nobody listens or nobody greets", async () => {
    await assert.rejects(
      QmpClient.connect(`${fake.dir}/nothing.sock`, { connectTimeoutMs: 500 }),
      (e: unknown) => isVmqError(e, "qemu::qmp-connect-failed"),
    );
    const mute = await FakeQmp.start({ greet: false });
    try {
      await assert.rejects(QmpClient.connect(mute.path, { connectTimeoutMs: 200 }), (e: unknown) =>
        isVmqError(e, "qemu::qmp-connect-failed"),
      );
    } finally {
      await mute.stop();
    }
  });

  it("rejects a command at once when its signal already fired", async () => {
    const c = await QmpClient.connect(fake.path);
    try {
      const n = fake.received.length;
      await assert.rejects(c.execute("stop", undefined, { signal: AbortSignal.abort() }));
      await c.execute("query-status");
      assert.equal(fake.received.length, n + 1, "the aborted command was never sent");
    } finally {
      c.close();
    }
  });
});
