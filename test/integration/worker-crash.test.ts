import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { jetstreamManager, RetentionPolicy, StorageType } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { VmqClient } from "../../src/client/index.js";
import type { VmEvent } from "../../src/contracts/index.js";
import { NatsServer, testPrefix } from "../helpers/nats-server.js";
import { WorkerProcess } from "../helpers/worker-process.js";
import { SPEC, eventually } from "../helpers/worker-harness.js";

const DUPLICATE_WINDOW_MS = 1_000;

describe("worker: SIGKILL mid-command, then restart", { timeout: 120_000 }, () => {
  let server: NatsServer;
  let nc: NatsConnection;
  let client: VmqClient;
  let dir: string;
  let args: string[];
  let worker: WorkerProcess;

  const noopState = async (vmId: string) =>
    JSON.parse(await readFile(join(dir, "noop", `${vmId}.json`), "utf8")) as {
      state: string;
      handle: { pid?: number };
    };
  const ready = async () =>
    eventually(
      async () => (await client.hosts()).find((x) => x.host === "h1" && x.state === "running"),
      30_000,
      "worker ready",
    );

  before(async () => {
    server = await NatsServer.start();
    nc = await server.connect();
    const prefix = testPrefix();
    client = new VmqClient(nc, { prefix, timeoutMs: 30_000 });
    dir = await mkdtemp(join(tmpdir(), "vmq-crash-"));
    // The events stream as the worker makes it, but with a duplicate window of 1 s: the worker's
    // event ids are deterministic, so within the default 2 min a command's second outcome would
    // be dropped by JetStream without a word, and "not run again" could not fail.
    await (
      await jetstreamManager(nc)
    ).streams.add({
      name: client.names.eventsStream,
      subjects: [`${prefix}.evt.>`],
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      max_age: 0,
      duplicate_window: DUPLICATE_WINDOW_MS * 1_000_000,
      allow_direct: true,
      deny_delete: true,
    });
    args = [
      "--nats",
      server.url,
      "--prefix",
      prefix,
      "--host",
      "h1",
      "--data-dir",
      dir,
      "--noop-state-dir",
      join(dir, "noop"),
      "--noop-latency-ms",
      "400",
      "--ack-wait-ms",
      "3000",
      "--heartbeat-ms",
      "300",
      "--log-level",
      "warn",
    ];
    worker = new WorkerProcess(args).start();
    await ready();
  });
  after(async () => {
    await worker.kill();
    await nc.close();
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it("rebuilds handles from the stream, resolves the interrupted command once, and leaves running guests alone", async () => {
    await client.send("h1", { type: "vm.prepare", vmId: "keep", spec: SPEC });
    await client.send("h1", { type: "vm.start", vmId: "keep" });
    await client.send("h1", { type: "vm.prepare", vmId: "mid", spec: SPEC });
    await client.send("h1", { type: "vm.start", vmId: "mid" });
    const pidBefore = (await noopState("keep")).handle.pid;

    // Kill the worker while the stop of `mid` is inside the backend call (after its intent).
    const { command } = await client.publish("h1", {
      type: "vm.stop",
      vmId: "mid",
      timeoutMs: 5000,
    });
    await eventually(async () =>
      (await client.history("h1", "mid")).some((e) => e.event.causationId === command.commandId)
        ? true
        : undefined,
    );
    await worker.kill("SIGKILL");

    worker = new WorkerProcess(args).start();
    await ready();

    // The interrupted command completes exactly once: resolved from the backend's state if the
    // stop had happened, otherwise resumed when its message is redelivered.
    const outcome = await client.waitForOutcome("h1", "mid", command.commandId, {
      timeoutMs: 30_000,
    });
    assert.equal(outcome.outcome.type, "vm.stopped");
    const view = await eventually(async () => {
      const v = await client.get("mid");
      return v && v.pending === null ? v : undefined;
    });
    assert.equal(view.state, (await noopState("mid")).state, "the view agrees with the backend");

    // The redelivered stop (never acked) finds its outcome in history: no second outcome.
    const marker = await client.send("h1", { type: "vm.destroy", vmId: "mid" });
    assert.equal(marker.outcome.type, "vm.destroyed");
    const forStop = (await client.history("h1", "mid")).filter(
      (e) => e.event.causationId === command.commandId,
    );
    assert.deepEqual(
      forStop.map((e) => e.event.type).filter((t) => t !== "vm.command-accepted").length,
      1,
    );

    // The running guest was not touched: same pid, still running, no new events.
    assert.equal((await noopState("keep")).state, "running");
    assert.equal((await noopState("keep")).handle.pid, pidBefore);
    const keep = await client.history("h1", "keep");
    assert.deepEqual(
      keep.map((e) => e.event.type),
      ["vm.command-accepted", "vm.prepared", "vm.command-accepted", "vm.started"],
    );
  });

  it("a command killed after its outcome but before its ack is not run again", async () => {
    await client.send("h1", { type: "vm.prepare", vmId: "late", spec: SPEC });
    // A worker that dies at its first ack, i.e. right after the start's outcome is recorded.
    await worker.kill("SIGTERM");
    const dying = new WorkerProcess(args, { VMQ_FAILPOINTS: "before-ack@1" }).start();
    await ready();
    const { command } = await client.publish("h1", { type: "vm.start", vmId: "late" });
    await dying.ended();
    assert.deepEqual(dying.failpoints, ["before-ack"], dying.output);
    const consumer = await (
      await jetstreamManager(nc)
    ).consumers.info(client.names.commandsStream, client.names.durable("h1"));
    assert.equal(consumer.num_ack_pending, 1, "the start is unacked: it will be delivered again");
    // The redelivered start comes after the events' duplicate window: a second intent or
    // outcome (a rejection: the VM is running) would be stored and seen below.
    await sleep(2 * DUPLICATE_WINDOW_MS + 500);
    worker = new WorkerProcess(args).start();
    await ready();
    const marker = await client.send("h1", { type: "vm.suspend", vmId: "late" });
    assert.equal(marker.outcome.type, "vm.suspended");
    const events: VmEvent[] = (await client.history("h1", "late")).map((e) => e.event);
    assert.deepEqual(
      events.filter((e) => e.causationId === command.commandId).map((e) => e.type),
      ["vm.command-accepted", "vm.started"],
      "one intent, one outcome",
    );
    assert.equal((await noopState("late")).state, "suspended");
    const calls = (await readFile(join(dir, "noop", "calls.log"), "utf8"))
      .split("\n")
      .filter((l) => l.endsWith(" late"));
    assert.deepEqual(calls, ["prepare late", "start late", "suspend late"], "one start");
  });

  it("a prepare that finished in the backend but died before its outcome is recorded as prepared, from the backend's record", async () => {
    // Another host: a data dir of its own (a data dir is locked by its worker).
    const h3 = args.map((a) => (a === "h1" ? "h3" : a === dir ? join(dir, "h3") : a));
    const dying = new WorkerProcess(h3, { VMQ_FAILPOINTS: "in-backend@1" }).start();
    await eventually(
      async () => (await client.hosts()).find((x) => x.host === "h3" && x.state === "running"),
      30_000,
      "h3 ready",
    );
    const { command } = await client.publish("h3", { type: "vm.prepare", vmId: "rec", spec: SPEC });
    await dying.exit(); // the backend prepared the VM; its outcome was never written
    assert.equal((await noopState("rec")).state, "prepared");
    const next = new WorkerProcess(h3).start();
    try {
      const r = await client.waitForOutcome("h3", "rec", command.commandId, { timeoutMs: 30_000 });
      assert.equal(r.outcome.type, "vm.prepared", JSON.stringify(r.outcome));
      assert.equal(r.outcome.reconciled, true);
      if (r.outcome.type === "vm.prepared") assert.equal(r.outcome.handle.id, "rec");
      // The VM goes on as any prepared VM would.
      const started = await client.send("h3", { type: "vm.start", vmId: "rec" });
      assert.equal(started.outcome.type, "vm.started");
    } finally {
      await next.kill("SIGTERM");
    }
  });

  it("a VM's later commands wait for the earlier one a dead worker held (no start before its prepare)", async () => {
    // A long ack_wait: JetStream would bring the dead worker's prepare back only after a
    // minute, while the start and stop published after it are delivered at once.
    const h2 = args.map((a) =>
      a === "h1"
        ? "h2"
        : a === "3000"
          ? "60000"
          : a === dir
            ? join(dir, "h2")
            : a === "warn"
              ? "info"
              : a,
    );
    const dying = new WorkerProcess(h2, { VMQ_FAILPOINTS: "before-intent=1" }).start();
    await eventually(
      async () => (await client.hosts()).find((x) => x.host === "h2" && x.state === "running"),
      30_000,
      "h2 ready",
    );
    const prepare = await client.publish("h2", { type: "vm.prepare", vmId: "ord", spec: SPEC });
    await dying.exit(); // killed before the prepare recorded anything, the message unacked
    const start = await client.publish("h2", { type: "vm.start", vmId: "ord" });
    const stop = await client.publish("h2", { type: "vm.stop", vmId: "ord", timeoutMs: 5000 });

    const next = new WorkerProcess(h2).start();
    try {
      const outcome = await client
        .waitForOutcome("h2", "ord", stop.command.commandId, { timeoutMs: 45_000 })
        .catch((e: Error) => {
          // Once failed in CI under load, with nothing to say why: the workers' logs say.
          throw new Error(
            `${e.message}\nthe killed worker's log:\n${dying.output.slice(-3000)}\nthe restarted worker's log:\n${next.output.slice(-6000)}`,
          );
        });
      assert.equal(outcome.outcome.type, "vm.stopped");
      const outcomes = (await client.history("h2", "ord"))
        .map((e) => e.event)
        .filter((e) => e.type !== "vm.command-accepted" && e.causationId);
      assert.deepEqual(
        outcomes.map((e) => [e.causationId, e.type]),
        [
          [prepare.command.commandId, "vm.prepared"],
          [start.command.commandId, "vm.started"],
          [stop.command.commandId, "vm.stopped"],
        ],
        "each command took effect once, in the order published",
      );
      assert.match(next.output, /an earlier command of this VM has no outcome yet/);
    } finally {
      await next.kill("SIGTERM");
    }
  });
});
