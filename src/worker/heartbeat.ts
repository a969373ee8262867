import type { KV } from "@nats-io/kv";
import type { HostRecord, WorkerState } from "../contracts/index.js";
import type { WorkerContext } from "./context.js";

export const VERSION = "0.1.0";

/** Writes the host record into `vmq-hosts`; the bucket's TTL removes a host that stops beating. */
export class Heartbeat {
  #timer: NodeJS.Timeout | undefined;
  readonly startedAt = new Date().toISOString();

  constructor(
    private readonly ctx: WorkerContext,
    private readonly hosts: KV,
    private readonly state: () => WorkerState,
    private readonly queued: () => number,
  ) {}

  record(): HostRecord {
    const { ctx } = this;
    const caps = ctx.router.capabilities();
    return {
      host: ctx.host,
      version: VERSION,
      state: this.state(),
      backends: ctx.router.tags,
      defaultBackend: ctx.router.defaultBackend,
      capabilities: caps,
      labels: ctx.config.labels,
      startedAt: this.startedAt,
      heartbeatAt: new Date().toISOString(),
      vmCount: ctx.registry.all().filter((v) => v.state !== null && v.state !== "destroyed").length,
      inFlight: ctx.stats.inFlight + this.queued(),
      concurrency: ctx.config.concurrency,
      ...(this.accelerator ? { accelerator: this.accelerator } : {}),
    };
  }

  accelerator: "kvm" | "tcg" | undefined;

  async beat(): Promise<void> {
    try {
      await this.hosts.put(this.ctx.host, JSON.stringify(this.record()));
    } catch (e) {
      this.ctx.log.warn({ err: e }, "heartbeat failed");
    }
  }

  start(): void {
    void this.beat();
    this.#timer = setInterval(() => void this.beat(), this.ctx.config.heartbeatMs);
    this.#timer.unref();
  }

  /** Stops beating; `remove` deletes the record (a drained host leaves the registry at once). */
  async stop(remove: boolean): Promise<void> {
    clearInterval(this.#timer);
    if (remove) await this.hosts.delete(this.ctx.host).catch(() => undefined);
    else await this.beat();
  }
}
