import { setMaxListeners } from "node:events";
import type { WorkerState } from "../contracts/index.js";
import { resolveConfig, type ResolvedConfig, type WorkerConfigInput } from "../config/config.js";
import type { HypervisorRouter } from "../hypervisor/index.js";
import { toVmqError } from "../lib/errors.js";
import { createLogger, type Logger } from "../observability/logger.js";
import { assemble, type Parts, type WorkerCore } from "./assembly.js";
import { buildRouter } from "./backends.js";
import { Lanes } from "./consumer/lanes.js";
import { DataDirLock } from "./data-dir-lock.js";
import { Lifecycle } from "./lifecycle.js";
import { NatsLink } from "./nats/nats-link.js";
import { ServiceStack } from "./service-stack.js";
import type { VmReader } from "./state/vm-streams.js";
import { WorkerStats } from "./stats.js";

export interface WorkerDeps {
  /** A router of your own (tests inject a Noop with faults); default: built from config. */
  router?: HypervisorRouter;
  logger?: Logger;
  /** The data dir's lock, taken already (the CLI takes it before loading the worker's code). */
  lock?: DataDirLock;
}

/**
 * The command worker of one host. States: starting -> running -> draining -> stopped, or
 * failed (the moves are in lifecycle.ts). start() starts its services in order (assembly.ts)
 * and only then consumes; drain() stops them in reverse: the consumer first, which is the drain
 * of in-flight commands (finished, or abandoned with their intents recorded), the connections
 * last. A drain while start() runs ends it at its next step: start() then resolves with the
 * worker stopped. A NATS disconnect is survived and logged.
 */
export class Worker {
  readonly stats = new WorkerStats();
  readonly config: ResolvedConfig;
  readonly log: Logger;
  readonly router: HypervisorRouter;
  readonly #life = new Lifecycle();
  readonly #lanes: Lanes;
  /** Aborted when a drain gives up on in-flight commands; every command listens to it. */
  readonly #abandon = new AbortController();
  readonly #link: NatsLink;
  readonly #lock: DataDirLock;
  /** The services of the current start attempt. */
  #stack: ServiceStack;
  #parts: Parts = {};
  /** It stopped because another worker of its host took the lease (the CLI exits 1). */
  leaseLost = false;

  constructor(input: WorkerConfigInput, deps: WorkerDeps = {}) {
    this.config = resolveConfig(input);
    this.log = (
      deps.logger ?? createLogger({ level: this.config.logLevel, format: this.config.logFormat })
    ).child({
      host: this.config.host,
    });
    this.router = deps.router ?? buildRouter(this.config, this.log);
    this.#lanes = new Lanes(this.config.concurrency);
    setMaxListeners(0, this.#abandon.signal); // one listener per in-flight command: not a leak
    this.#stack = new ServiceStack(this.log);
    this.#lock = deps.lock ?? new DataDirLock(this.config.dataDir, this.log);
    this.#link = new NatsLink(
      { ...this.config.connection, host: this.config.host, dataDir: this.config.dataDir },
      this.log,
      (connection) => {
        // Messages in flight at the disconnect come back only after ack_wait: keep order.
        if (connection === "commands")
          this.#parts.order
            ?.open()
            .catch((e: unknown) => this.log.warn({ err: e }, "could not read the consumer state"));
      },
      this.#lock,
    );
  }

  get state(): WorkerState {
    return this.#life.state;
  }
  /** Both of the worker's NATS connections are up. */
  get connected(): boolean {
    return this.#link.connected;
  }
  /** The NATS server the worker's commands connection is on now (host:port). */
  get natsServer(): string | undefined {
    return this.#link.server("commands");
  }
  /** The server its events connection is on now: in a cluster, often another node. */
  get eventsNatsServer(): string | undefined {
    return this.#link.server("events");
  }
  get natsUrl(): string | undefined {
    return this.#link.url;
  }
  /** The host's VMs as this worker knows them (once start-up has replayed them). */
  get registry(): VmReader | undefined {
    return this.#parts.streams;
  }
  get queued(): number {
    return this.#lanes.queued;
  }
  /** The port /metrics is served on (when --http is set). */
  get httpPort(): number | undefined {
    return this.#parts.http?.port;
  }
  /** The host's public key for sealed user-data (once start-up has loaded it). */
  get userDataKey(): string | undefined {
    return this.#parts.hostKey?.publicKey;
  }
  /** Replayed and reconciled: ready to take commands. */
  /** active or standby (once the lease was read), idle before, lost after another took it. */
  get role(): string {
    return this.#parts.lease?.role ?? "idle";
  }
  /** The lease's fencing token (the KV revision that took it); 0 while not active. */
  get leaseToken(): number {
    return this.#parts.lease?.token ?? 0;
  }
  /** View records refused because the view held newer ones (a later writer's). */
  get viewWritesRefused(): number {
    return this.#parts.view?.refused ?? 0;
  }
  get replayed(): boolean {
    return this.#parts.replayed === true;
  }

  /** How long each step of the last start took, in order. */
  get startTimings(): readonly { step: string; ms: number }[] {
    return this.#stack.timings;
  }

  onState(listener: (state: WorkerState, previous: WorkerState) => void): () => void {
    return this.#life.onChange(listener);
  }

  /** Resolves once the worker has stopped (or failed). */
  run(): Promise<void> {
    return this.#life.ended;
  }

  async start(): Promise<this> {
    // Drained before it was started, stopping, or started already: nothing to do.
    if (!this.#life.can("starting")) return this;
    if (this.#life.phase === "failed") {
      // A retry after a failed start: new services from scratch.
      this.#stack = new ServiceStack(this.log);
      this.#parts = {};
    }
    this.#life.move("starting");
    const t0 = performance.now();
    try {
      await assemble(this.#stack, this.#core(), this.#parts);
      // A stop asked for during the last service's start: it drains now, as one while running.
      this.#stack.stopping.throwIfAborted();
      this.#life.move("running");
      // Say so in the host record now, not at the next heartbeat: placement only picks hosts
      // whose record says running, and a scheduler may act the moment the log line appears.
      await this.#parts.heartbeat?.beat();
      this.log.info(
        {
          durable: this.#parts.consumer?.durable,
          concurrency: this.config.concurrency,
          backends: this.router.tags,
          // Where a slow start went (the replay is "host state"): one figure per step.
          startMs: Math.round(performance.now() - t0),
          startSteps: Object.fromEntries(this.startTimings.map((t) => [t.step, t.ms])),
        },
        "worker running",
      );
      return this;
    } catch (e) {
      if (this.#stack.stopping.aborted) {
        // A SIGTERM during a long replay (a rolling update, say) is a stop, not a failure;
        // but a step that failed on its own while the stop waited still gets said.
        if (e !== this.#stack.stopping.reason)
          this.log.warn({ err: e, code: toVmqError(e).code }, "start-up failed while stopping");
        await this.#stop();
        return this;
      }
      this.log.error({ err: e, code: toVmqError(e).code }, "worker failed to start");
      this.#life.move("failed");
      await this.#stack.stopAll();
      throw e;
    }
  }

  #core(): WorkerCore {
    return {
      config: this.config,
      log: this.log,
      router: this.router,
      stats: this.stats,
      lanes: this.#lanes,
      link: this.#link,
      lock: this.#lock,
      abandon: this.#abandon,
      state: () => this.#life.state,
      draining: () => this.#life.phase === "draining",
      alive: () => this.#life.phase !== "failed",
      notReady: () => this.notReady(),
      leaseLost: (why) => {
        this.leaseLost = true;
        this.log.error({ code: "host::lease-lost", why }, "lost this host's lease: stopping");
        void this.drain();
      },
    };
  }

  /** Why the worker is not ready (empty when it is). */
  notReady(): string[] {
    const why: string[] = [];
    const { state } = this.#life;
    const consumer = this.#parts.consumer;
    const lease = this.#parts.lease;
    if (lease?.role === "standby") why.push("standby: another worker holds this host's lease");
    else if (lease?.role === "active" && lease.fenced)
      why.push("the host lease could not be renewed (fenced: backend calls wait)");
    if (state !== "running") why.push(`worker is ${state}`);
    if (!this.replayed) why.push("not replayed and reconciled yet");
    const wait = this.#link.waiting;
    if (wait)
      why.push(
        `waiting-for-nats: unreachable since ${wait.since.toISOString()} (${wait.attempts} attempts): ${wait.error}`,
      );
    else if (!this.connected) why.push("NATS is away (degraded)");
    else if (consumer && !consumer.running && state === "running")
      why.push("the command consumer is being restarted (degraded)");
    return why;
  }

  /** Snapshots the VMs changed since the last one (only when no command is running or queued). */
  snapshot(): Promise<boolean> {
    return this.#parts.snapshotter?.snapshot() ?? Promise.resolve(false);
  }

  /**
   * Stops fetching, waits up to drainTimeoutMs for in-flight commands, abandons the rest with
   * their intents recorded (they are redelivered to the next worker of this host), then closes.
   */
  async drain(): Promise<void> {
    switch (this.#life.phase) {
      case "idle":
        this.#life.move("stopped");
        return;
      case "starting":
        if (!this.#stack.stopping.aborted)
          this.log.info("stop asked for while starting: stopping after the current start-up step");
        this.#stack.abort();
        return this.#life.ended;
      case "running":
        return this.#stop();
      default:
        return this.#life.ended; // draining, stopped, or failed (torn down already)
    }
  }

  /** Same as drain; kept for symmetry with other workers' APIs. */
  close(): Promise<void> {
    return this.drain();
  }

  async #stop(): Promise<void> {
    this.#life.move("draining");
    this.log.info({ inFlight: this.#lanes.running, queued: this.#lanes.queued }, "draining");
    await this.#stack.stopAll();
    this.#life.move("stopped");
  }
}
