/**
 * The command pipeline on in-memory parts with a router that records what it is asked
 * (test/unit/worker/pipeline-paths and pipeline-order): the handler, its VmStreams over a
 * scripted store, a Noop backend with faults, an order gate over a held command log.
 */
import {
  names as namesFor,
  type Command,
  type VmEvent,
  type VmHandle,
  type VmSpec,
  type VmSpecInput,
  type VmState,
} from "../../src/contracts/index.js";
import { HypervisorRouter, NoopBackend, type StopOptions } from "../../src/hypervisor/index.js";
import type { CallOptions, StopResult } from "../../src/hypervisor/hypervisor.js";
import { FaultyBackend } from "../../src/hypervisor/testing/faulty-backend.js";
import { silentLogger } from "../../src/observability/logger.js";
import { CommandHandler } from "../../src/worker/pipeline/command-handler.js";
import { type CommandLog, type StoredCommand } from "../../src/worker/pipeline/order-gate.js";
import type { CommandMessage, Settlement } from "../../src/worker/pipeline/settlement.js";
import type { DeadLetter } from "../../src/worker/ports.js";
import { VmStreams, type Change } from "../../src/worker/state/vm-streams.js";
import { memoryHostKey } from "../../src/worker/secrets/host-key.js";
import { WorkerStats } from "../../src/worker/stats.js";
import { command, HOST, orderGate, ScriptedStore, SPEC } from "./pipeline-fixture.js";

export const names = namesFor("vmq");
export const enc = new TextEncoder();

export interface Call {
  op: string;
  handle?: VmHandle;
  vmId?: string;
  spec?: VmSpec;
  opts: CallOptions | StopOptions | undefined;
}

/** The router over a Noop backend, recording every call; a call can be made to throw first. */
export class SpyRouter extends HypervisorRouter {
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
export class HeldLog implements CommandLog {
  readonly messages: StoredCommand[] = [];
  position = () => Promise.resolve({ ackFloor: 0, delivered: this.messages.length });
  next(subject: string, fromSeq: number): Promise<StoredCommand | null> {
    const m = this.messages.find((x) => x.subject === subject && x.seq >= fromSeq);
    return Promise.resolve(m ?? null);
  }
}

export function build(
  o: {
    noop?: FaultyBackend<NoopBackend>;
    maxAttempts?: number;
    maxDeliver?: number;
    log?: CommandLog;
  } = {},
) {
  const store = new ScriptedStore();
  const stats = new WorkerStats();
  const durations: [string, number][] = [];
  stats.onDuration = (type, ms) => durations.push([type, ms]);
  const streams = new VmStreams(HOST, store, {
    log: silentLogger(),
    onConflict: () => stats.conflicts++,
  });
  const changes: [string, Change][] = [];
  streams.onChange((vmId, c) => changes.push([vmId, c]));
  const noop = o.noop ?? new FaultyBackend(new NoopBackend());
  const router = new SpyRouter([noop]);
  const order = orderGate(o.log);
  const deadLetters: DeadLetter[] = [];
  const dlq: { onPut?: () => void } = {};
  const fleet = { owner: undefined as string | undefined, asked: [] as string[] };
  const abandon = new AbortController();
  let ids = 0;
  const hostKey = memoryHostKey();
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
    hostKey,
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
    hostKey,
    handle: (c: Command | Uint8Array, m?: Parameters<typeof message>[1]): Promise<Settlement> =>
      handler.handle(message(c, m)),
    types: async (vmId: string): Promise<string[]> => (await events(vmId)).map((e) => e.type),
  };
  return t;
}

export const ACK = { kind: "ack" };
export const prepare = (vmId: string, spec: VmSpecInput = SPEC) =>
  command({ type: "vm.prepare", vmId, spec });
export const field = (e: VmEvent | undefined, k: string): unknown =>
  e === undefined ? undefined : (e as unknown as Record<string, unknown>)[k];
