import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { jetstreamManager, RetentionPolicy, StorageType } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { DLQ_HEADERS, names as namesFor } from "../../src/contracts/index.js";
import { HypervisorRouter, NoopBackend } from "../../src/hypervisor/index.js";
import { isVmqError } from "../../src/lib/errors.js";
import { silentLogger } from "../../src/observability/logger.js";
import { Worker } from "../../src/worker/worker.js";
import { Harness, SPEC, eventually, testNoop } from "../helpers/worker-harness.js";
import { testPrefix } from "../helpers/nats-server.js";

describe("worker operations", { timeout: 120_000 }, () => {
  let h: Harness;
  before(async () => {
    h = await Harness.start({ monitoring: true });
  });
  after(async () => h.stop());

  interface Conn {
    name?: string;
    in_msgs: number;
    subscriptions_list?: string[];
  }
  /** The server's view of the connections named vmq-worker-<host>... (monitoring /connz). */
  async function workerConns(host: string): Promise<Map<string, Conn>> {
    const r = await fetch(`${h.server.monitorUrl}/connz?subs=1&limit=1024`);
    const { connections } = (await r.json()) as { connections: Conn[] };
    return new Map(
      connections
        .filter((c) => c.name?.startsWith(`vmq-worker-${host}`))
        .map((c) => [c.name as string, c]),
    );
  }

  it("appends events on a NATS connection of its own, apart from the one consuming commands", async () => {
    const { worker } = await h.worker({ host: "cx" });
    const N = 6;
    for (let i = 0; i < N; i++)
      await h.client.send("cx", { type: "vm.prepare", vmId: `cx-${i}`, spec: SPEC });
    const conns = await workerConns("cx");
    assert.deepEqual([...conns.keys()].sort(), ["vmq-worker-cx", "vmq-worker-cx-events"]);
    const events = conns.get("vmq-worker-cx-events") as Conn;
    // The PubAcks of the appends come back on the events connection, to the host's inbox...
    assert.ok(
      events.subscriptions_list?.some((s) => s.startsWith("_INBOX_cx.")),
      `events connection subscriptions: ${events.subscriptions_list?.join(", ")}`,
    );
    // ...and it sent every intent and outcome: two appends per command.
    assert.ok(events.in_msgs >= 2 * N, `events connection sent ${events.in_msgs} messages`);
    // The other connection serves the host's queries; the events connection does not.
    const queries = namesFor(h.prefix).apiFilter("cx");
    assert.ok(conns.get("vmq-worker-cx")?.subscriptions_list?.includes(queries));
    assert.ok(!events.subscriptions_list?.includes(queries));
    await worker.drain();
    // A drain closes both.
    await eventually(async () => ((await workerConns("cx")).size === 0 ? true : undefined));
  });

  const connsGone = (host: string, what: string) =>
    eventually(async () => ((await workerConns(host)).size === 0 ? true : undefined), 10_000, what);

  it("a drain while start() is still reconciling ends the start cleanly: stopped, no command pulled, none lost", async () => {
    const host = "sws";
    const vmId = "sws-1";
    const vms = 24; // more than the reconcile's 16 at a time
    const noop = testNoop();
    const { worker: first } = await h.worker({ host, backend: noop });
    for (let i = 1; i <= vms; i++)
      await h.client.send(host, { type: "vm.prepare", vmId: `sws-${i}`, spec: SPEC });
    await first.drain();
    const { command } = await h.client.publish(host, { type: "vm.start", vmId });

    // The next worker's start() is held inside its reconcile step (adopting the VM).
    let reached!: () => void;
    const atAdopt = new Promise<void>((r) => (reached = r));
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const adopt = noop.adopt.bind(noop);
    let adopted = 0;
    noop.adopt = async (vm) => {
      adopted++;
      reached();
      await gate;
      return adopt(vm);
    };
    const second = new Worker(
      {
        nats: h.server.url,
        prefix: h.prefix,
        host,
        dataDir: h.dataDir,
        reconcileIntervalMs: 0,
        heartbeatMs: 500,
      },
      { router: new HypervisorRouter([noop]), logger: silentLogger() },
    );
    h.workers.push(second); // drained again at the end, should an assertion fail first
    const starting = second.start();
    await atAdopt;
    const drained = second.drain();
    release();
    await starting; // it used to reject: the drain had closed its connections under it
    await drained;
    noop.adopt = adopt;
    assert.equal(second.state, "stopped");
    assert.ok(
      adopted < vms,
      `the reconcile took no further VM after the stop (${adopted} adopted)`,
    );
    await connsGone(host, "both connections to close");

    // The command was not pulled: it waits on the host's durable, with no outcome yet.
    const n = namesFor(h.prefix);
    const info = await (
      await jetstreamManager(h.nc)
    ).consumers.info(n.commandsStream, n.durable(host));
    assert.equal(info.num_ack_pending, 0);
    assert.equal(info.num_pending, 1);
    const events = (await h.client.history(host, vmId)).map((e) => e.event.type);
    assert.deepEqual(events, ["vm.command-accepted", "vm.prepared"]);

    // The next worker runs it.
    await h.worker({ host, backend: noop });
    const done = await h.client.waitForOutcome(host, vmId, command.commandId, { fromSeq: 0 });
    assert.equal(done.outcome.type, "vm.started");
  });

  it("a worker drained before start() was called stays stopped and connects nowhere", async () => {
    const w = new Worker(
      { nats: h.server.url, prefix: h.prefix, host: "swn", dataDir: h.dataDir },
      { router: new HypervisorRouter([new NoopBackend()]), logger: silentLogger() },
    );
    h.workers.push(w); // drained again at the end, should it have started after all
    await w.drain();
    assert.equal(w.state, "stopped");
    await w.start(); // it used to connect and start taking commands after all
    assert.equal(w.state, "stopped");
    await connsGone("swn", "no connection");
  });

  it("records changes no command explains (a guest power-off, a crash) as vm.state-observed", async () => {
    const { worker, noop } = await h.worker({ host: "obs" });
    for (const id of ["obs-1", "obs-2"]) {
      await h.client.send("obs", { type: "vm.prepare", vmId: id, spec: SPEC });
      await h.client.send("obs", { type: "vm.start", vmId: id });
    }
    await noop.vanish("obs-1", "guest-poweroff");
    await noop.vanish("obs-2", "crash");
    for (const [id, guest] of [
      ["obs-1", true],
      ["obs-2", false],
    ] as const) {
      const e = await eventually(async () => {
        const last = (await h.client.history("obs", id)).at(-1)?.event;
        return last?.type === "vm.state-observed" ? last : undefined;
      });
      assert.equal(e.causationId, null);
      assert.equal(e.state, "stopped");
      if (e.type === "vm.state-observed") {
        assert.equal(e.observed, "stopped");
        assert.equal(e.previous, "running");
        assert.equal(e.source, "process");
        assert.equal(e.detail?.startsWith("guest-initiated"), guest);
      }
    }
    // The VM can be started again after the observed stop.
    assert.equal(
      (await h.client.send("obs", { type: "vm.start", vmId: "obs-1" })).outcome.type,
      "vm.started",
    );
    await worker.drain();
  });

  it("runs one periodic reconcile pass at a time, even when a pass outlasts the interval", async () => {
    const { worker, noop } = await h.worker({ host: "rc", reconcileIntervalMs: 50 });
    const ids = ["rc-1", "rc-2", "rc-3"];
    for (const id of ids) await h.client.send("rc", { type: "vm.prepare", vmId: id, spec: SPEC });
    // A slow hypervisor: one pass (3 VMs, one at a time) takes about 900 ms, 18 intervals.
    const CALL_MS = 300;
    noop.latencyMs = CALL_MS;
    const before = noop.calls.length;
    const began = Date.now();
    await new Promise((r) => setTimeout(r, 2_000));
    const states = noop.calls.slice(before).filter((c) => c.op === "state").length;
    const elapsed = Date.now() - began;
    noop.latencyMs = 0;
    // One pass at a time makes at most one call per CALL_MS (plus the one under way); passes
    // stacking up (one started every 50 ms) run the three VMs' lanes side by side, about 3x.
    assert.ok(states > 0, "the periodic pass ran");
    assert.ok(
      states <= Math.ceil(elapsed / CALL_MS) + 1,
      `${states} state calls in ${elapsed} ms: reconcile passes overlapped`,
    );
    await worker.drain();
  });

  it("records drift found by a periodic pass, and the VM's next command still runs", async () => {
    const { worker, noop } = await h.worker({ host: "pd", reconcileIntervalMs: 100 });
    await h.client.send("pd", { type: "vm.prepare", vmId: "pd-1", spec: SPEC });
    await h.client.send("pd", { type: "vm.start", vmId: "pd-1" });
    const handle = worker.registry?.get("pd-1").handle;
    assert.ok(handle);
    // The guest stops behind the worker's back, and nothing tells it: only a pass can find it.
    noop.inner.seed(handle, "stopped");
    const drift = await eventually(
      async () =>
        (await h.client.history("pd", "pd-1")).find((e) => e.event.type === "vm.state-observed"),
      10_000,
      "the periodic pass records the drift",
    );
    assert.equal(drift.event.state, "stopped");
    // The pass recorded it from inside the VM's lane: the lane must be free for its commands.
    const started = await h.client.send(
      "pd",
      { type: "vm.start", vmId: "pd-1" },
      { timeoutMs: 10_000 },
    );
    assert.equal(started.outcome.type, "vm.started");
    await worker.drain();
  });

  it("drains on request: in-flight commands finish, then the worker stops and its host record leaves", async () => {
    const { worker } = await h.worker({ host: "dr", noop: { latencyMs: 600 } });
    await h.client.send("dr", { type: "vm.prepare", vmId: "dr-1", spec: SPEC });
    const { command } = await h.client.publish("dr", { type: "vm.start", vmId: "dr-1" });
    await eventually(async () =>
      (await h.client.history("dr", "dr-1")).some((e) => e.event.causationId === command.commandId)
        ? true
        : undefined,
    );
    await worker.drain();
    assert.equal(worker.state, "stopped");
    const outcome = await h.client.waitForOutcome("dr", "dr-1", command.commandId, {
      timeoutMs: 5_000,
    });
    assert.equal(outcome.outcome.type, "vm.started");
    await eventually(
      async () => ((await h.client.hosts()).some((x) => x.host === "dr") ? undefined : true),
      5_000,
      "host record removed",
    );
  });

  it("a drain that times out abandons the command with its intent kept; the next worker resumes it", async () => {
    const noop = testNoop();
    const first = await h.worker({ host: "ab", backend: noop, drainTimeoutMs: 200 });
    await h.client.send("ab", { type: "vm.prepare", vmId: "ab-1", spec: SPEC });
    noop.latencyMs = 3_000;
    const { command } = await h.client.publish("ab", { type: "vm.start", vmId: "ab-1" });
    await eventually(async () =>
      (await h.client.history("ab", "ab-1")).some((e) => e.event.causationId === command.commandId)
        ? true
        : undefined,
    );
    await first.worker.drain();
    const hist = await h.client.history("ab", "ab-1");
    assert.equal(
      hist.at(-1)?.event.type,
      "vm.command-accepted",
      "the intent is recorded and has no outcome yet",
    );
    noop.latencyMs = 0;
    await h.worker({ host: "ab", backend: noop });
    const out = await h.client.waitForOutcome("ab", "ab-1", command.commandId, {
      timeoutMs: 10_000,
    });
    assert.equal(
      out.outcome.type,
      "vm.started",
      "the abandoned command was handed back and resumed",
    );
    const view = await eventually(async () => {
      const v = await h.client.get("ab-1");
      return v?.pending === null ? v : undefined;
    });
    assert.equal(view.state, noop.inner.peek("ab-1") === "running" ? "running" : "prepared");
  });

  it("an unreachable backend at start-up makes a running VM unknown, never failed, and touches nothing", async () => {
    const noop = testNoop();
    const w1 = await h.worker({ host: "un", backend: noop });
    await h.client.send("un", { type: "vm.prepare", vmId: "un-1", spec: SPEC });
    await h.client.send("un", { type: "vm.start", vmId: "un-1" });
    await w1.worker.drain();
    noop.setUnreachable(true);
    const before = noop.calls.length;
    await h.worker({ host: "un", backend: noop });
    const last = (await h.client.history("un", "un-1")).at(-1)?.event;
    assert.equal(last?.type, "vm.state-observed");
    assert.equal(last?.state, "unknown");
    if (last?.type === "vm.state-observed") assert.equal(last.source, "reconcile");
    assert.deepEqual(
      noop.calls.slice(before).map((c) => c.op),
      ["state"],
      "only asked, never acted",
    );
    assert.equal(noop.inner.peek("un-1"), "running");
  });

  it("dead-letters a command that exhausted its deliveries (e.g. the worker died on it each time)", async () => {
    const w = await h.worker({ host: "md", maxDeliver: 2, ackWaitMs: 1000 });
    await w.worker.drain();
    const { command, seq } = await h.client.publish("md", {
      type: "vm.prepare",
      vmId: "md-1",
      spec: SPEC,
    });
    // Two deliveries nobody acks, as if the worker had crashed on it twice.
    const consumer = await h.client.js.consumers.get(h.client.names.commandsStream, "worker-md");
    for (let i = 0; i < 2; i++) {
      const m = await consumer.next({ expires: 5_000 });
      assert.equal(m?.seq, seq);
      await new Promise((r) => setTimeout(r, 1_300));
    }
    assert.equal(await consumer.next({ expires: 1_500 }), null, "JetStream stops delivering it");
    await h.worker({ host: "md", maxDeliver: 2, ackWaitMs: 1000 });
    const jsm = await jetstreamManager(h.nc);
    const dl = await eventually(
      async () =>
        (await jsm.streams.getMessage(h.client.names.dlqStream, {
          last_by_subj: h.client.names.dlq("md", "md-1"),
        })) ?? undefined,
      15_000,
      "DLQ entry",
    );
    assert.equal(dl.header.get(DLQ_HEADERS.code), "command::max-deliveries");
    assert.equal(dl.header.get(DLQ_HEADERS.attempts), "2");
    const out = await h.client.waitForOutcome("md", "md-1", command.commandId, {
      timeoutMs: 10_000,
    });
    assert.equal(out.outcome.type, "vm.command-failed");
    if (out.outcome.type === "vm.command-failed")
      assert.equal(out.outcome.code, "command::max-deliveries");
  });

  it("refuses to start on a stream with incompatible settings, with a clear error", async () => {
    const prefix = testPrefix();
    const jsm = await jetstreamManager(h.nc);
    await jsm.streams.add({
      name: `${prefix.toUpperCase()}_EVENTS`,
      subjects: [`${prefix}.evt.>`],
      storage: StorageType.Memory,
      retention: RetentionPolicy.Limits,
    });
    await assert.rejects(h.worker({ prefix, host: "inc" }), (e: unknown) => {
      assert.ok(isVmqError(e, "nats::incompatible-stream"));
      assert.match(e.message, /file storage/);
      return true;
    });
    const info = await jsm.streams.info(`${prefix.toUpperCase()}_EVENTS`);
    assert.equal(info.config.storage, StorageType.Memory, "nothing was changed silently");
  });

  it("refuses to start on a KV bucket with incompatible settings, and changes nothing", async () => {
    const prefix = testPrefix();
    const kv = await new Kvm(h.nc).create(`${prefix}-vms`, { storage: StorageType.Memory });
    await assert.rejects(h.worker({ prefix, host: "inb" }), (e: unknown) => {
      assert.ok(isVmqError(e, "nats::incompatible-bucket"), String(e));
      assert.match(e.message, /file storage/);
      return true;
    });
    assert.equal((await kv.status()).bucket, `${prefix}-vms`);
    const info = await (await jetstreamManager(h.nc)).streams.info(`KV_${prefix}-vms`);
    assert.equal(info.config.storage, StorageType.Memory, "nothing was changed silently");
  });

  it("recreates its durable consumer when it is deleted, and goes on consuming", async () => {
    const { worker } = await h.worker({ host: "rc" });
    await h.client.send("rc", { type: "vm.prepare", vmId: "rc-1", spec: SPEC });
    const names = namesFor(h.prefix);
    const jsm = await jetstreamManager(h.nc);
    await jsm.consumers.delete(names.commandsStream, names.durable("rc"));
    // Published while the durable is gone: it waits in the stream and is run once it is back.
    const r = await h.client.send("rc", { type: "vm.start", vmId: "rc-1" }, { timeoutMs: 60_000 });
    assert.equal(r.outcome.type, "vm.started");
    const info = await jsm.consumers.info(names.commandsStream, names.durable("rc"));
    assert.equal(info.config.filter_subject, names.cmdFilter("rc"));
    assert.deepEqual(worker.notReady(), []);
    assert.equal(worker.stats.consumerRestarts, 1, "consuming was started again, once");
  });

  it("survives a NATS restart without restarting itself", async () => {
    const { worker } = await h.worker({ host: "nr" });
    await h.client.send("nr", { type: "vm.prepare", vmId: "nr-1", spec: SPEC });
    await h.server.kill("SIGKILL");
    await eventually(() => (worker.connected ? undefined : true), 5_000, "disconnect noticed");
    await h.server.restart();
    await eventually(() => (worker.connected ? true : undefined), 15_000, "reconnected");
    // The test's own client may still be reconnecting: retry the publish under one commandId.
    const commandId = "nr-start-1";
    await eventually(
      async () => h.client.publish("nr", { type: "vm.start", vmId: "nr-1", commandId }),
      30_000,
      "publish after restart",
    );
    const r = await h.client.waitForOutcome("nr", "nr-1", commandId, { timeoutMs: 30_000 });
    assert.equal(r.outcome.type, "vm.started");
    assert.equal(worker.state, "running");
  });
});
