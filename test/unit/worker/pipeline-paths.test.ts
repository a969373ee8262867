/**
 * The command pipeline's less travelled paths, on in-memory parts with a router that records
 * what it is asked: what each backend call receives (handle, spec, stop and destroy options,
 * the deadline's signal), bad input in detail, a failure after which the backend reports
 * another state, held commands a dead worker left behind, the delays behind a command sent
 * back, the last delivery given up, and the counters the host record and metrics read.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  commandVmToken,
  names as namesFor,
  parseCommand,
  type Command,
  type VmEvent,
  type VmHandle,
  type VmSpec,
  type VmSpecInput,
  type VmState,
} from "../../../src/contracts/index.js";
import { emptyVm } from "../../../src/domain/index.js";
import {
  HypervisorError,
  HypervisorRouter,
  NoopBackend,
  type StopOptions,
} from "../../../src/hypervisor/index.js";
import type { CallOptions, StopResult } from "../../../src/hypervisor/hypervisor.js";
import { VmqError } from "../../../src/lib/errors.js";
import { silentLogger } from "../../../src/observability/logger.js";
import { stubHandle } from "../../../src/worker/pipeline/backend-call.js";
import { CommandHandler } from "../../../src/worker/pipeline/command-handler.js";
import {
  OrderGate,
  type CommandLog,
  type StoredCommand,
} from "../../../src/worker/pipeline/order-gate.js";
import type { CommandMessage, Settlement } from "../../../src/worker/pipeline/settlement.js";
import type { DeadLetter } from "../../../src/worker/ports.js";
import { VmStreams, type Change } from "../../../src/worker/state/vm-streams.js";
import { WorkerStats } from "../../../src/worker/stats.js";
import { command, HOST, ScriptedStore, SPEC } from "../../helpers/pipeline-fixture.js";

const names = namesFor("vmq");
const enc = new TextEncoder();

interface Call {
  op: string;
  handle?: VmHandle;
  vmId?: string;
  spec?: VmSpec;
  opts: CallOptions | StopOptions | undefined;
}

/** The router over a Noop backend, recording every call; a call can be made to throw first. */
class SpyRouter extends HypervisorRouter {
  readonly calls: Call[] = [];
  /** Thrown by the next call of this op (once). */
  readonly throwOnce = new Map<string, Error>();
  /** What state() answers instead of asking the backend (a rejection when it is an Error). */
  stateAnswer: VmState | Error | undefined;

  #enter(op: string, call: Omit<Call, "op">): void {
    this.calls.push({ op, ...call });
    const e = this.throwOnce.get(op);
    if (e) {
      this.throwOnce.delete(op);
      throw e;
    }
  }
  override async prepare(vmId: string, spec: VmSpec, opts?: CallOptions): Promise<VmHandle> {
    this.#enter("prepare", { vmId, spec, opts });
    return super.prepare(vmId, spec, opts);
  }
  override async start(vm: VmHandle, opts?: CallOptions): Promise<VmHandle> {
    this.#enter("start", { handle: vm, opts });
    return super.start(vm, opts);
  }
  override async stop(vm: VmHandle, opts: StopOptions): Promise<StopResult> {
    this.#enter("stop", { handle: vm, opts });
    return super.stop(vm, opts);
  }
  override async suspend(vm: VmHandle, opts?: CallOptions): Promise<VmHandle> {
    this.#enter("suspend", { handle: vm, opts });
    return super.suspend(vm, opts);
  }
  override async resume(vm: VmHandle, opts?: CallOptions): Promise<VmHandle> {
    this.#enter("resume", { handle: vm, opts });
    return super.resume(vm, opts);
  }
  override async destroy(vm: VmHandle, opts: StopOptions): Promise<void> {
    this.#enter("destroy", { handle: vm, opts });
    return super.destroy(vm, opts);
  }
  override async state(vm: VmHandle, opts?: CallOptions): Promise<VmState> {
    this.#enter("state", { handle: vm, opts });
    const a = this.stateAnswer;
    if (a instanceof Error) throw a;
    return a ?? super.state(vm, opts);
  }
  ops(): string[] {
    return this.calls.map((c) => c.op);
  }
  last(op: string): Call | undefined {
    return this.calls.filter((c) => c.op === op).at(-1);
  }
}

/** A command stream a previous worker left: what it delivered, and where its ack floor is. */
class HeldLog implements CommandLog {
  readonly messages: StoredCommand[] = [];
  position = () => Promise.resolve({ ackFloor: 0, delivered: this.messages.length });
  next(subject: string, fromSeq: number): Promise<StoredCommand | null> {
    const m = this.messages.find((x) => x.subject === subject && x.seq >= fromSeq);
    return Promise.resolve(m ?? null);
  }
}

function build(
  o: { noop?: NoopBackend; maxAttempts?: number; maxDeliver?: number; log?: CommandLog } = {},
) {
  const store = new ScriptedStore();
  const stats = new WorkerStats();
  const durations: [string, number][] = [];
  stats.onDuration = (type, ms) => durations.push([type, ms]);
  const streams = new VmStreams(HOST, store, silentLogger(), () => stats.conflicts++);
  const changes: [string, Change][] = [];
  streams.onChange((vmId, c) => changes.push([vmId, c]));
  const noop = o.noop ?? new NoopBackend();
  const router = new SpyRouter([noop]);
  const log = o.log ?? {
    position: () => Promise.resolve({ ackFloor: 0, delivered: 0 }),
    next: () => Promise.resolve(null),
  };
  const order = new OrderGate(
    log,
    (data, subject) => {
      const p = parseCommand(data, commandVmToken(subject));
      return p.ok ? p.command : undefined;
    },
    600_000,
  );
  const deadLetters: DeadLetter[] = [];
  const dlq: { onPut?: () => void } = {};
  const fleet = { owner: undefined as string | undefined, asked: [] as string[] };
  const abandon = new AbortController();
  let ids = 0;
  const handler = new CommandHandler({
    host: HOST,
    streams,
    router,
    order,
    deadLetters: {
      put: (d) => {
        dlq.onPut?.();
        deadLetters.push(d);
        return Promise.resolve();
      },
    },
    fleet: {
      ownerElsewhere: (vmId) => (fleet.asked.push(vmId), Promise.resolve(fleet.owner)),
      refresh: () => undefined,
    },
    clock: { now: () => new Date() },
    ids: { newId: () => `id-${++ids}` },
    stats,
    log: silentLogger(),
    abandon: abandon.signal,
    limits: { maxAttempts: o.maxAttempts ?? 3, maxDeliver: o.maxDeliver ?? 5 },
  });
  let seq = 0;
  const message = (
    body: Uint8Array | object,
    m: { vmId?: string; subject?: string; delivery?: number; seq?: number } = {},
  ): CommandMessage => {
    const vmId = m.vmId ?? ("vmId" in body ? String(body.vmId) : "v1");
    const delivery = m.delivery ?? 1;
    return {
      subject: m.subject ?? names.cmd(HOST, vmId),
      data: body instanceof Uint8Array ? body : enc.encode(JSON.stringify(body)),
      seq: m.seq ?? ++seq,
      info: { redelivered: delivery > 1, deliveryCount: delivery },
    };
  };
  const events = async (vmId: string): Promise<VmEvent[]> =>
    (await store.readVm(HOST, vmId)).map((e) => e.event);
  const t = {
    handler,
    store,
    streams,
    stats,
    durations,
    changes,
    noop,
    router,
    order,
    deadLetters,
    dlq,
    fleet,
    abandon,
    message,
    events,
    handle: (c: Command | Uint8Array, m?: Parameters<typeof message>[1]): Promise<Settlement> =>
      handler.handle(message(c, m)),
    types: async (vmId: string): Promise<string[]> => (await events(vmId)).map((e) => e.type),
  };
  return t;
}

const ACK = { kind: "ack" };
const prepare = (vmId: string, spec: VmSpecInput = SPEC) =>
  command({ type: "vm.prepare", vmId, spec });
const field = (e: VmEvent | undefined, k: string): unknown =>
  e === undefined ? undefined : (e as unknown as Record<string, unknown>)[k];

describe("what each backend call receives", () => {
  it("prepare: the spec with the default backend filled in, recorded as such", async () => {
    const t = build();
    assert.deepEqual(await t.handle(prepare("a")), ACK);
    const call = t.router.last("prepare");
    assert.equal(call?.vmId, "a");
    assert.equal(call?.spec?.backend, "noop");
    assert.equal(call?.spec?.name, SPEC.name);
    assert.equal(t.streams.get("a").spec?.backend, "noop");
  });

  it("every lifecycle call gets the VM's own handle and the command's deadline signal", async () => {
    const t = build();
    await t.handle(prepare("a"));
    const recorded = t.streams.get("a").handle;
    for (const type of ["vm.start", "vm.suspend", "vm.resume"] as const)
      assert.deepEqual(await t.handle(command({ type, vmId: "a" })), ACK, type);
    assert.deepEqual(
      await t.handle(command({ type: "vm.stop", vmId: "a", timeoutMs: 1_234, force: "never" })),
      ACK,
    );
    assert.deepEqual(
      await t.handle(command({ type: "vm.destroy", vmId: "a", timeoutMs: 4_321 })),
      ACK,
    );
    assert.deepEqual(t.router.ops(), ["prepare", "start", "suspend", "resume", "stop", "destroy"]);
    for (const c of t.router.calls) {
      assert.ok(c.opts?.signal instanceof AbortSignal, `${c.op} gets a signal`);
      if (c.op !== "prepare") assert.equal(c.handle?.id, "a", c.op);
    }
    assert.equal(t.router.last("start")?.handle?.workDir, recorded?.workDir);
    assert.deepEqual(
      { ...t.router.last("stop")?.opts, signal: undefined },
      { timeoutMs: 1_234, force: "never", signal: undefined },
    );
    assert.deepEqual(
      { ...t.router.last("destroy")?.opts, signal: undefined },
      { timeoutMs: 4_321, force: "after-timeout", signal: undefined },
      "a destroy always escalates",
    );
    assert.deepEqual(await t.types("a"), [
      "vm.command-accepted",
      "vm.prepared",
      "vm.command-accepted",
      "vm.started",
      "vm.command-accepted",
      "vm.suspended",
      "vm.command-accepted",
      "vm.resumed",
      "vm.command-accepted",
      "vm.stopped",
      "vm.command-accepted",
      "vm.destroyed",
    ]);
    const stopped = (await t.events("a")).find((e) => e.type === "vm.stopped");
    assert.equal(field(stopped, "how"), "acpi", "the step the backend reports");
  });

  it("a VM whose prepare never finished is destroyed through a stub handle the backend finds by id", async () => {
    const t = build();
    t.router.throwOnce.set("prepare", new HypervisorError("hypervisor::failed", "disk full"));
    await t.handle(prepare("a", { ...SPEC, name: "web-a" }));
    assert.equal(t.streams.get("a").state, "failed");
    assert.equal(t.streams.get("a").handle, null);
    await t.handle(command({ type: "vm.destroy", vmId: "a" }));
    assert.deepEqual(t.router.last("destroy")?.handle, {
      ...stubHandle(emptyVm("a", HOST), "noop"),
      name: "web-a",
    });
  });

  it("a stub handle: the vmId as its name when there is no spec, an empty work dir", () => {
    assert.deepEqual(stubHandle(emptyVm("a", HOST), "propolis"), {
      id: "a",
      name: "a",
      backend: "propolis",
      workDir: "",
      vcpus: 1,
      memoryMb: 1024,
      network: { type: "user" },
      uefi: false,
    });
  });
});

describe("bad input in detail", () => {
  it("a fresh commandId is rejected under it, counted under its known type, dead-lettered", async () => {
    const t = build();
    const body = { ...command({ type: "vm.start", vmId: "a" }), version: 2 };
    const s = await t.handle(enc.encode(JSON.stringify(body)), { vmId: "a", delivery: 2, seq: 42 });
    assert.deepEqual(s, { kind: "term" });
    const [e] = await t.events("a");
    assert.equal(e?.type, "vm.command-rejected");
    assert.equal(field(e, "commandId"), body.commandId);
    assert.equal(e?.causationId, body.commandId);
    assert.equal(field(e, "code"), "command::unsupported-version");
    assert.equal(t.stats.commands.get("vm.start|rejected"), 1);
    assert.equal(t.stats.deadLettered, 1);
    assert.deepEqual(
      { ...t.deadLetters[0], data: undefined },
      {
        subject: names.cmd(HOST, "a"),
        data: undefined,
        headers: undefined,
        streamSeq: 42,
        code: "command::unsupported-version",
        reason: (() => {
          const p = parseCommand(JSON.stringify(body), "a");
          return p.ok ? "" : p.message;
        })(),
        attempts: 2,
      },
    );
  });

  it("an unknown type is counted as invalid, never under the client's own string", async () => {
    const t = build();
    const body = { ...command({ type: "vm.start", vmId: "a" }), type: "vm.explode" };
    await t.handle(enc.encode(JSON.stringify(body)), { vmId: "a" });
    assert.deepEqual([...t.stats.commands], [["invalid|rejected", 1]]);
  });

  it("a commandId that already has an outcome gets no second one, but is still dead-lettered", async () => {
    const t = build();
    const c = prepare("a");
    await t.handle(c);
    const again = { ...c, version: 2 };
    assert.deepEqual(await t.handle(enc.encode(JSON.stringify(again)), { vmId: "a" }), {
      kind: "term",
    });
    assert.deepEqual(await t.types("a"), ["vm.command-accepted", "vm.prepared"]);
    assert.equal(t.stats.duplicates, 1);
    assert.equal(t.deadLetters.length, 1);
  });

  it("a subject without a valid vmId records nothing, and is dead-lettered", async () => {
    const t = build();
    const s = await t.handle(enc.encode("{oops"), { subject: "vmq.cmd.h1.a.b" });
    assert.deepEqual(s, { kind: "term" });
    const all: string[] = [];
    await t.store.replay("*", 0, (e) => all.push(e.event.vmId));
    assert.deepEqual(all, []);
    assert.equal(t.deadLetters[0]?.subject, "vmq.cmd.h1.a.b");
  });
});

describe("backend failures in detail", () => {
  it("a failure after which the backend reports another state records that state first", async () => {
    const t = build();
    await t.handle(prepare("a"));
    await t.handle(command({ type: "vm.start", vmId: "a" }));
    t.noop.vanish("a"); // the guest died behind the worker's back: the backend says stopped
    t.noop.failNext(1, "hypervisor::failed", { retryable: false, ops: ["suspend"] });
    assert.deepEqual(await t.handle(command({ type: "vm.suspend", vmId: "a" })), ACK);
    const events = await t.events("a");
    assert.deepEqual(
      events.slice(-3).map((e) => e.type),
      ["vm.command-accepted", "vm.state-observed", "vm.command-failed"],
    );
    const [, seen, failed] = events.slice(-3);
    assert.equal(seen?.eventId, "a:obs:id-1");
    assert.equal(field(seen, "detail"), "after vm.suspend failed with hypervisor::failed");
    assert.equal(failed?.state, "stopped", "the failure is recorded on the state the VM is in");
    assert.ok(
      t.router.last("state")?.opts?.signal instanceof AbortSignal,
      "the question has a timeout",
    );
    assert.equal(t.stats.total("failed"), 1);
    assert.equal(t.stats.total("succeeded"), 2);
  });

  it("a backend that cannot say what state the VM is in changes nothing", async () => {
    const t = build();
    await t.handle(prepare("a"));
    t.router.stateAnswer = new Error("unreachable");
    t.noop.failNext(1, "hypervisor::failed", { retryable: false, ops: ["start"] });
    await t.handle(command({ type: "vm.start", vmId: "a" }));
    const events = await t.events("a");
    assert.deepEqual(
      events.slice(-2).map((e) => e.type),
      ["vm.command-accepted", "vm.command-failed"],
    );
    assert.equal(events.at(-1)?.state, "prepared");
  });

  it("a failed prepare asks the backend nothing, even for a VM that had a handle", async () => {
    const t = build();
    await t.handle(prepare("a"));
    await t.handle(command({ type: "vm.destroy", vmId: "a" }));
    assert.ok(t.streams.get("a").handle, "a destroyed VM keeps its handle");
    t.noop.failNext(1, "hypervisor::failed", { retryable: false, ops: ["prepare"] });
    await t.handle(prepare("a"));
    assert.equal(t.router.ops().includes("state"), false);
    assert.equal((await t.events("a")).at(-1)?.type, "vm.command-failed");
  });

  it("a thrown error without a code is hypervisor::failed; the error's own hint is kept", async () => {
    const t = build();
    await t.handle(prepare("a"));
    t.router.throwOnce.set("start", new Error("boom"));
    await t.handle(command({ type: "vm.start", vmId: "a" }));
    const failed = (await t.events("a")).at(-1);
    assert.equal(field(failed, "code"), "hypervisor::failed");
    t.router.throwOnce.set(
      "start",
      new HypervisorError("qemu::bridge", "no bridge br9", { hint: "create br9 first" }),
    );
    await t.handle(command({ type: "vm.start", vmId: "a" }));
    assert.equal(field((await t.events("a")).at(-1), "hint"), "create br9 first");
  });

  it("a call the backend reports aborted counts as the deadline's: retried while time is left", async () => {
    const t = build();
    await t.handle(prepare("a"));
    t.noop.failNext(1, "hypervisor::aborted", { retryable: false, ops: ["start"] });
    assert.deepEqual(await t.handle(command({ type: "vm.start", vmId: "a" })), ACK);
    assert.equal(t.streams.get("a").state, "running");
    assert.deepEqual(t.router.ops(), ["prepare", "start", "start"]);
  });

  it("a passed deadline says which command and which deadline", async () => {
    const t = build({ maxAttempts: 1 });
    await t.handle(prepare("a"));
    t.noop.failNext(1, "hypervisor::injected", { ops: ["start"] });
    const c = command({ type: "vm.start", vmId: "a" });
    // The intent was recorded an hour ago (by this worker, before a restart): its deadline is past.
    const old = new Date(Date.now() - 60 * 60_000);
    await t.streams.update("a", (vm) => ({
      type: "vm.command-accepted",
      version: 1,
      eventId: `a:${c.commandId}:accepted`,
      vmId: "a",
      host: HOST,
      at: old.toISOString(),
      causationId: c.commandId,
      correlationId: null,
      state: vm.state ?? "prepared",
      command: c,
      deadline: new Date(old.getTime() + 1_000).toISOString(),
    }));
    assert.deepEqual(await t.handle(c), ACK);
    const failed = (await t.events("a")).at(-1);
    assert.equal(field(failed, "code"), "command::deadline-exceeded");
    assert.match(
      String(field(failed, "message")),
      /^vm\.start did not finish by its deadline \d{4}-\d\d-\d\dT/,
    );
  });

  it("in flight while it runs, counted and timed once done", async () => {
    const t = build();
    await t.handle(prepare("a"));
    await t.handle(command({ type: "vm.start", vmId: "a" }));
    t.noop.hangStop(true, "a");
    const stop = t.handle(
      command({ type: "vm.stop", vmId: "a", timeoutMs: 200, force: "after-timeout" }),
    );
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(t.stats.inFlight, 1);
    assert.deepEqual(await stop, ACK);
    assert.equal(t.stats.inFlight, 0);
    assert.deepEqual(
      t.durations.map(([type]) => type),
      ["vm.prepare", "vm.start", "vm.stop"],
    );
    for (const [type, ms] of t.durations) assert.ok(ms >= 0 && ms < 10_000, `${type}: ${ms} ms`);
    assert.ok((t.durations.at(-1)?.[1] ?? 0) >= 150, "the stop waited out its timeout");
  });
});

describe("host checks", () => {
  it("a redelivered command that already has its outcome is a duplicate, whatever the host says now", async () => {
    const t = build();
    const c = prepare("a");
    await t.handle(c);
    t.fleet.owner = "h2"; // the view now says another host holds it
    assert.deepEqual(await t.handle(c, { delivery: 2 }), ACK);
    assert.deepEqual(await t.types("a"), ["vm.command-accepted", "vm.prepared"]);
  });

  it("only a prepare asks the fleet view", async () => {
    const t = build();
    await t.handle(prepare("a"));
    await t.handle(command({ type: "vm.start", vmId: "a" }));
    assert.deepEqual(t.fleet.asked, ["a"]);
  });

  it("suspend is refused by a backend that cannot, and runs on one that can", async () => {
    const no = build({ noop: new NoopBackend({ suspend: false }) });
    await no.handle(prepare("a"));
    await no.handle(command({ type: "vm.start", vmId: "a" }));
    await no.handle(command({ type: "vm.suspend", vmId: "a" }));
    assert.equal(field((await no.events("a")).at(-1), "code"), "hypervisor::unsupported");
    const yes = build();
    await yes.handle(prepare("a"));
    await yes.handle(command({ type: "vm.start", vmId: "a" }));
    await yes.handle(command({ type: "vm.suspend", vmId: "a" }));
    assert.equal(yes.streams.get("a").state, "suspended");
  });
});

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
    t.noop.seed(
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
