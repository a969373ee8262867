/**
 * The command pipeline on in-memory parts: the InMemoryEventStore, a Noop backend, an order gate
 * over a command log with nothing held, and recording fakes for the DLQ and the fleet view.
 * Every settlement path runs without a nats-server.
 */
import { randomUUID } from "node:crypto";
import {
  Command,
  commandVmToken,
  names as namesFor,
  parseCommand,
  type CommandInput,
  type VmEvent,
} from "../../src/contracts/index.js";
import type { EventStore, StoredEvent } from "../../src/event-store/event-store.js";
import { InMemoryEventStore } from "../../src/event-store/in-memory-event-store.js";
import { FaultyBackend, HypervisorRouter, NoopBackend } from "../../src/hypervisor/index.js";
import { VmqError } from "../../src/lib/errors.js";
import { silentLogger } from "../../src/observability/logger.js";
import type { DiskSink } from "../../src/worker/images/disk-sink.js";
import { CommandHandler } from "../../src/worker/pipeline/command-handler.js";
import { OrderGate, type CommandLog } from "../../src/worker/pipeline/order-gate.js";
import type { CommandMessage } from "../../src/worker/pipeline/settlement.js";
import type { DeadLetter } from "../../src/worker/ports.js";
import { memoryTombstones } from "../../src/worker/nats/tombstones.js";
import { VmStreams } from "../../src/worker/state/vm-streams.js";
import { memoryHostKey } from "../../src/worker/secrets/host-key.js";
import { WorkerStats } from "../../src/worker/stats.js";

export const HOST = "h1";
export const SPEC = { name: "web", imagePath: "/images/base.qcow2", vcpus: 1, memoryMb: 256 };
const names = namesFor("vmq");
const enc = new TextEncoder();

/** An event store whose appends can be made to fail, or to meet a racing writer first. */
export class ScriptedStore implements EventStore {
  readonly inner = new InMemoryEventStore();
  /** Appends fail with this error while set. */
  failWith: Error | undefined;
  /** Runs once before the next append (another writer moving a VM on, say). */
  beforeNextAppend: (() => Promise<void>) | undefined;
  /** The next append lands, but its caller hears a failure (an acknowledgement lost). */
  loseNextAck = false;

  async append(event: VmEvent, expectedSeq: number): Promise<number> {
    const race = this.beforeNextAppend;
    this.beforeNextAppend = undefined;
    await race?.();
    if (this.failWith) throw this.failWith;
    const seq = await this.inner.append(event, expectedSeq);
    if (this.loseNextAck) {
      this.loseNextAck = false;
      throw new VmqError("event-store::append-failed", "PubAck lost", { retryable: true });
    }
    return seq;
  }
  readVm(host: string, vmId: string): Promise<StoredEvent[]> {
    return this.inner.readVm(host, vmId);
  }
  purgeVm(host: string, vmId: string, throughSeq: number): Promise<number> {
    return this.inner.purgeVm(host, vmId, throughSeq);
  }
  replay(
    host: string,
    afterSeq: number,
    onEvent: (e: StoredEvent) => void,
    signal?: AbortSignal,
  ): Promise<{ lastSeq: number; count: number }> {
    return this.inner.replay(host, afterSeq, onEvent, signal);
  }
}

/** A command log a previous worker left nothing in. */
export const NOTHING_HELD: CommandLog = {
  position: () => Promise.resolve({ ackFloor: 0, delivered: 0 }),
  next: () => Promise.resolve(null),
};

/** The worker's order gate over `log`, parsing what it reads back as the consumer does. */
export function orderGate(log: CommandLog = NOTHING_HELD): OrderGate {
  return new OrderGate(
    log,
    (data, subject) => {
      const p = parseCommand(data, commandVmToken(subject));
      return p.ok ? p.command : undefined;
    },
    600_000,
  );
}

export interface PipelineOptions {
  maxAttempts?: number;
  maxDeliver?: number;
  /** The live host that holds a vmId in the fleet view. */
  ownerElsewhere?: string;
  /** The Noop in fault injection (failNext, hangStop, calls). */
  noop?: FaultyBackend<NoopBackend>;
  /** commandIds cancelled (vmq cancel) before the worker takes them. */
  cancelled?: Set<string>;
  /** Where vm.export-disk sends a disk (absent: the worker has none). */
  disks?: DiskSink;
}

export function pipeline(opts: PipelineOptions = {}) {
  const store = new ScriptedStore();
  const stats = new WorkerStats();
  const tombstones = memoryTombstones();
  const streams = new VmStreams(HOST, store, {
    log: silentLogger(),
    onConflict: () => stats.conflicts++,
    tombstones,
  });
  const noop = opts.noop ?? new FaultyBackend(new NoopBackend());
  const router = new HypervisorRouter([noop]);
  const order = orderGate();
  const deadLetters: DeadLetter[] = [];
  const dlq = { failing: false };
  const refreshed: string[] = [];
  const abandon = new AbortController();
  /** The worker's clock: the real one unless a test sets it. */
  let now: Date | undefined;
  const handler = new CommandHandler({
    host: HOST,
    streams,
    router,
    order,
    deadLetters: {
      put: (d) => {
        if (dlq.failing) return Promise.reject(new Error("DLQ unreachable"));
        deadLetters.push(d);
        return Promise.resolve();
      },
    },
    fleet: {
      ownerElsewhere: () => Promise.resolve(opts.ownerElsewhere),
      refresh: (vmId) => refreshed.push(vmId),
    },
    clock: { now: () => now ?? new Date() },
    ids: { newId: () => randomUUID() },
    stats,
    log: silentLogger(),
    abandon: abandon.signal,
    limits: { maxAttempts: opts.maxAttempts ?? 3, maxDeliver: opts.maxDeliver ?? 5 },
    hostKey: memoryHostKey(),
    cancels: opts.cancelled ?? new Set(),
    ...(opts.disks ? { disks: opts.disks } : {}),
  });
  let seq = 0;
  return {
    handler,
    store,
    tombstones,
    streams,
    noop,
    order,
    stats,
    deadLetters,
    dlq,
    refreshed,
    abandon,
    /** Moves the worker's clock (the decider's "now": deadlines are set from it). */
    setNow: (d: Date) => (now = d),
    /** A command message as JetStream delivers it. */
    message(
      body: Uint8Array | object,
      o: { vmId?: string; delivery?: number; seq?: number } = {},
    ): CommandMessage {
      const vmId = o.vmId ?? ("vmId" in body ? String(body.vmId) : "v1");
      const delivery = o.delivery ?? 1;
      return {
        subject: names.cmd(HOST, vmId),
        data: body instanceof Uint8Array ? body : enc.encode(JSON.stringify(body)),
        seq: o.seq ?? ++seq,
        info: { redelivered: delivery > 1, deliveryCount: delivery },
      };
    },
    /** The VM's history, event types in order. */
    async history(vmId: string): Promise<string[]> {
      return (await store.readVm(HOST, vmId)).map((e) => e.event.type);
    },
    /** Backend calls other than state queries, as `op:vmId`. */
    effects: () => noop.calls.filter((c) => c.op !== "state").map((c) => `${c.op}:${c.vmId}`),
  };
}

/** A valid command of the current version. */
export function command(
  c: Omit<CommandInput, "version" | "commandId" | "issuedAt"> & Partial<CommandInput>,
): Command {
  return Command.parse({
    version: 1,
    commandId: randomUUID(),
    issuedAt: new Date().toISOString(),
    ...c,
  });
}
