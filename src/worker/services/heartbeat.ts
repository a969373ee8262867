import type { KV } from "@nats-io/kv";
import type { HostRecord, WorkerState } from "../../contracts/index.js";
import type { HypervisorRouter } from "../../hypervisor/index.js";
import type { Logger } from "../../observability/logger.js";
import type { Service } from "../service-stack.js";
import type { VmReader } from "../state/vm-streams.js";

export const VERSION = "0.1.0";

export interface HeartbeatDeps {
  host: string;
  hosts: KV;
  router: Pick<HypervisorRouter, "capabilities" | "tags" | "defaultBackend">;
  labels: Record<string, string>;
  concurrency: number;
  intervalMs: number;
  accelerator: "kvm" | "tcg" | undefined;
  state: () => WorkerState;
  vms: Pick<VmReader, "all">;
  /** The record's key (default: the host id); a standby writes `<host>.standby.<instance>`. */
  key?: string;
  role?: "active" | "standby";
  /** Commands running or waiting for a lane. */
  busy: () => number;
  log: Logger;
  /** The host's curve public key: schedulers seal user-data to it. */
  userDataKey?: string;
}

/** Writes the host record into `vmq-hosts`; the bucket's TTL removes a host that stops beating. */
export class Heartbeat implements Service {
  readonly name = "heartbeat";
  #timer: NodeJS.Timeout | undefined;
  readonly startedAt = new Date().toISOString();

  constructor(private readonly deps: HeartbeatDeps) {}

  get #key(): string {
    return this.deps.key ?? this.deps.host;
  }

  record(): HostRecord {
    const { deps } = this;
    return {
      host: deps.host,
      version: VERSION,
      state: deps.state(),
      backends: deps.router.tags,
      defaultBackend: deps.router.defaultBackend,
      capabilities: deps.router.capabilities(),
      labels: deps.labels,
      startedAt: this.startedAt,
      heartbeatAt: new Date().toISOString(),
      vmCount: deps.vms.all().filter((v) => v.state !== null && v.state !== "destroyed").length,
      inFlight: deps.busy(),
      concurrency: deps.concurrency,
      ...(deps.role ? { role: deps.role } : {}),
      ...(deps.accelerator ? { accelerator: deps.accelerator } : {}),
      ...(deps.userDataKey ? { userDataKey: deps.userDataKey } : {}),
    };
  }

  async beat(): Promise<void> {
    try {
      await this.deps.hosts.put(this.#key, JSON.stringify(this.record()));
    } catch (e) {
      this.deps.log.warn({ err: e }, "heartbeat failed");
    }
  }

  start(): Promise<void> {
    void this.beat();
    this.#timer = setInterval(() => void this.beat(), this.deps.intervalMs);
    this.#timer.unref();
    return Promise.resolve();
  }

  /** Stops beating and deletes the record: a drained host leaves the registry at once. */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.deps.hosts.delete(this.#key).catch(() => undefined);
  }
}
