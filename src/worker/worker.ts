import { setMaxListeners } from "node:events";
import { randomUUID } from "node:crypto";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import {
  commandVmToken,
  names as namesFor,
  parseCommand,
  type VmEvent,
  type WorkerState,
} from "../contracts/index.js";
import { workerInboxPrefix } from "../contracts/permissions.js";
import { observed, type Vm } from "../domain/index.js";
import { resolveConfig, type ResolvedConfig, type WorkerConfigInput } from "../config/config.js";
import { JetStreamEventStore } from "../event-store/jetstream-event-store.js";
import { JetStreamPublisher } from "../event-store/publisher.js";
import { ensureConsumer, ensureTopology } from "../event-store/provision.js";
import { SnapshotStore } from "../event-store/snapshots.js";
import type { HypervisorRouter, ObservedChange } from "../hypervisor/index.js";
import { isVmqError, toVmqError } from "../lib/errors.js";
import { createLogger, type Logger } from "../observability/logger.js";
import { buildRouter } from "./backends.js";
import { CommandConsumer } from "./command-consumer.js";
import { CommandHandler } from "./command-handler.js";
import { connectNats } from "./connect.js";
import type { WorkerContext } from "./context.js";
import { DlqMover } from "./dlq-mover.js";
import { startEmbeddedNats, type EmbeddedNats } from "./embedded-nats.js";
import { Heartbeat } from "./heartbeat.js";
import { Lanes } from "./lanes.js";
import { OrderGate } from "./order-gate.js";
import { serveQueries } from "./queries.js";
import { serveConsole } from "./console-relay.js";
import type { Server } from "node:http";
import { createMetrics } from "../observability/metrics.js";
import { startHttp } from "./http.js";
import { Reconciler } from "./reconciler.js";
import { WorkerStats } from "./stats.js";
import { VmRegistry } from "./vm-registry.js";
import { viewWriter } from "./view-writer.js";

export interface WorkerDeps {
  /** A router of your own (tests inject a Noop with faults); default: built from config. */
  router?: HypervisorRouter;
  logger?: Logger;
}

type StateListener = (state: WorkerState, previous: WorkerState) => void;

/**
 * The command worker of one host. States: starting -> running -> draining -> stopped, or
 * failed. start() provisions, replays, reconciles and only then consumes; drain() stops
 * fetching, lets in-flight commands finish (or abandons them with their intents recorded),
 * then closes. A drain while start() runs ends start() at its next step (connect, provision,
 * each replay batch, each VM's reconcile): start() then resolves with the worker stopped. One
 * that comes before commands are pulled pulls none; a later one drains as usual. A NATS
 * disconnect is survived and logged.
 */
export class Worker {
  #state: WorkerState = "starting";
  readonly #listeners = new Set<StateListener>();
  /** Aborted when a drain gives up on in-flight commands; every command listens to it. */
  readonly #abandon = unlimitedListeners(new AbortController());
  readonly stats = new WorkerStats();
  readonly config: ResolvedConfig;
  readonly log: Logger;
  readonly router: HypervisorRouter;
  #nc: NatsConnection | undefined;
  /** The write path's own connection: event appends and view records (see #start). */
  #writeNc: NatsConnection | undefined;
  /** Connections that are down now, by name: the worker is connected when none is. */
  readonly #away = new Set<string>();
  #publisher: JetStreamPublisher | undefined;
  #embedded: EmbeddedNats | undefined;
  #ctx: WorkerContext | undefined;
  #lanes: Lanes;
  #consumer: CommandConsumer | undefined;
  #mover: DlqMover | undefined;
  #queries: Subscription | undefined;
  #console: Subscription | undefined;
  #http: Server | undefined;
  /** The port /metrics is served on (when --http is set). */
  httpPort: number | undefined;
  #heartbeat: Heartbeat | undefined;
  #durable = "";
  #reconciler: Reconciler | undefined;
  #unwatch: (() => void) | undefined;
  #reconcileTimer: NodeJS.Timeout | undefined;
  #snapshotTimer: NodeJS.Timeout | undefined;
  #snapshots: SnapshotStore | undefined;
  #snapshotting = false;
  /** The periodic reconcile pass under way: a pass slower than the interval must not stack up. */
  #reconciling = false;
  #stopped: Promise<void>;
  #resolveStopped!: () => void;
  /** A stop asked for while start() runs: start() ends at its next step and stops cleanly. */
  readonly #stopWhileStarting = new AbortController();
  #startCalled = false;
  replayed = false;

  constructor(input: WorkerConfigInput, deps: WorkerDeps = {}) {
    this.config = resolveConfig(input);
    this.log = (deps.logger ?? createLogger({ level: this.config.logLevel })).child({
      host: this.config.host,
    });
    this.router = deps.router ?? buildRouter(this.config, this.log);
    this.#lanes = new Lanes(this.config.concurrency);
    this.#stopped = new Promise((r) => (this.#resolveStopped = r));
  }

  get state(): WorkerState {
    return this.#state;
  }
  /** Both of the worker's NATS connections are up. */
  get connected(): boolean {
    return this.#writeNc !== undefined && this.#away.size === 0;
  }
  /** The NATS server the worker's commands connection is on now (host:port). */
  get natsServer(): string | undefined {
    return this.#nc?.getServer();
  }
  /** The server its events connection is on now: in a cluster, often another node. */
  get eventsNatsServer(): string | undefined {
    return this.#writeNc?.getServer();
  }
  get natsUrl(): string | undefined {
    return this.config.nats ?? this.#embedded?.url;
  }
  get registry(): VmRegistry | undefined {
    return this.#ctx?.registry;
  }
  get queued(): number {
    return this.#lanes.queued;
  }

  onState(listener: StateListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Resolves once the worker has stopped (or failed). */
  run(): Promise<void> {
    return this.#stopped;
  }

  async start(): Promise<this> {
    // Drained before it was started (or while stopping): it stays stopped.
    if (this.#state === "stopped" || this.#state === "draining") return this;
    if (this.#state === "failed") this.#setState("starting"); // a retry after a failed start
    this.#startCalled = true;
    try {
      await this.#start();
      this.#stepDone();
      this.#setState("running");
      // Say so in the host record now, not at the next heartbeat: placement only picks hosts
      // whose record says running, and a scheduler may act the moment the log line appears.
      await this.#heartbeat?.beat();
      this.log.info(
        {
          durable: this.#durable,
          concurrency: this.config.concurrency,
          backends: this.router.tags,
        },
        "worker running",
      );
      return this;
    } catch (e) {
      if (this.#stopWhileStarting.signal.aborted) {
        // A SIGTERM during a long replay (a rolling update, say) is a stop, not a failure;
        // but a step that failed on its own while the stop waited still gets said.
        if (e !== this.#stopWhileStarting.signal.reason)
          this.log.warn({ err: e, code: toVmqError(e).code }, "start-up failed while stopping");
        await this.#drainNow();
        return this;
      }
      this.log.error({ err: e, code: toVmqError(e).code }, "worker failed to start");
      this.#setState("failed");
      await this.#teardown();
      throw e;
    }
  }

  async #start(): Promise<void> {
    const { config, log } = this;
    const names = namesFor(config.prefix);
    let url = config.nats;
    if (!url) {
      this.#embedded = await startEmbeddedNats(config.dataDir, config.embeddedPort, log);
      url = this.#embedded.url;
    }
    // Replies come to _INBOX_<host>.*: the host's credentials need not read other inboxes.
    const inboxPrefix = workerInboxPrefix(config.host);
    const nc = await connectNats({ ...config, nats: url }, `vmq-worker-${config.host}`, {
      inboxPrefix,
    });
    this.#nc = nc;
    this.#watchConnection(nc, "commands");
    // Event appends and view records get a connection of their own. nats-server reads each
    // connection on one goroutine, in order: on one connection the appends' stores waited
    // behind the consumer's acks and pull requests; on two they run on both cores.
    const writeNc = await connectNats(
      { ...config, nats: url },
      `vmq-worker-${config.host}-events`,
      { inboxPrefix },
    );
    this.#writeNc = writeNc;
    this.#watchConnection(writeNc, "events");
    this.#stepDone();
    log.debug("connected; provisioning");
    const jsm = await jetstreamManager(nc);
    const js = jetstream(nc);
    const topology = await ensureTopology(nc, jsm, names, {
      replicas: config.replicas,
      hostTtlMs: config.hostTtlMs,
    });
    log.debug("topology ready");
    const consumerOptions = {
      ackWaitMs: config.ackWaitMs,
      maxDeliver: config.maxDeliver,
      maxAckPending: config.maxAckPending,
      onUpdate: (changes: string[]) =>
        log.warn({ changes }, "updating the host's consumer to this worker's settings"),
    };
    const durable = await ensureConsumer(jsm, names, config.host, consumerOptions);
    this.#durable = durable;
    this.#stepDone();
    // The appends (and the acks) of one event-loop turn go out together (see the publisher).
    const publisher = new JetStreamPublisher(writeNc, inboxPrefix);
    this.#publisher = publisher;
    const store = new JetStreamEventStore(js, names, { publisher });
    const registry = new VmRegistry(
      config.host,
      store,
      viewWriter(writeNc, names.vmsBucket),
      log,
      () => this.#lanes.queued > 0,
    );
    const order = new OrderGate(
      jsm,
      names.commandsStream,
      durable,
      (data, subject) => {
        const p = parseCommand(data, commandVmToken(subject));
        return p.ok ? p.command : undefined;
      },
      config.ackWaitMs * (config.maxDeliver + 1),
    );
    const ctx: WorkerContext = {
      host: config.host,
      names,
      config,
      js,
      store,
      registry,
      order,
      router: this.router,
      vmsView: topology.vms,
      log,
      stats: this.stats,
      abandon: this.#abandon.signal,
      now: () => new Date(),
      newId: () => randomUUID(),
    };
    this.#ctx = ctx;

    const began = performance.now();
    this.#snapshots = new SnapshotStore(topology.snapshots);
    let from: { seq: number; vms: Vm[] } | undefined;
    if (config.snapshots === "on") {
      log.debug("loading snapshot");
      const snap = await this.#snapshots.load(config.host);
      if ("reason" in snap)
        log.info({ reason: snap.reason }, "no usable snapshot: replaying the whole history");
      else from = snap;
    }
    // The replay and the reconcile check the stop themselves (and throw its reason).
    const replay = await registry.replayAll(from, this.#stopWhileStarting.signal);
    this.stats.replayMs = performance.now() - began;
    this.stats.replayedEvents = replay.count;
    this.stats.replayFrom = from ? "snapshot" : "full";
    log.info(
      {
        events: replay.count,
        vms: registry.size,
        fromSnapshot: from?.seq ?? null,
        ms: Math.round(this.stats.replayMs),
      },
      "replayed the host's event stream",
    );

    this.#reconciler = new Reconciler(ctx, (vmId, make) => this.appendSerial(vmId, make));
    const rec = await this.#reconciler.reconcileAll({
      adopt: true,
      signal: this.#stopWhileStarting.signal,
    });
    this.replayed = true;
    log.info(rec, "reconciled VMs with the backends");
    void registry.flushView();

    this.#unwatch = this.router.watch((c) => this.#onObserved(c));
    this.#heartbeat = new Heartbeat(
      ctx,
      topology.hosts,
      () => this.#state,
      () => this.#lanes.queued,
    );
    const qemu = this.router.has("qemu") ? this.router.backend("qemu") : undefined;
    if (
      qemu &&
      "accelerator" in qemu &&
      (qemu.accelerator === "kvm" || qemu.accelerator === "tcg")
    ) {
      this.#heartbeat.accelerator = qemu.accelerator;
    }
    this.#heartbeat.start();
    this.#queries = serveQueries(nc, ctx);
    this.#console = serveConsole(nc, ctx);
    this.#mover = new DlqMover(
      ctx,
      jsm,
      (vmId, make) => this.appendSerial(vmId, make),
      (seq) => this.#consumer?.givenUp(seq),
    );
    await this.#mover.start();
    this.#consumer = new CommandConsumer(
      js,
      names.commandsStream,
      durable,
      this.#lanes,
      new CommandHandler(ctx),
      log,
      {
        ackWaitMs: config.ackWaitMs,
        batch: Math.min(config.maxAckPending, Math.max(64, config.concurrency * 8)),
        recreate: (startSeq) =>
          ensureConsumer(jsm, names, config.host, { ...consumerOptions, startSeq }),
        onRestart: () => this.stats.consumerRestarts++,
        send: (ack) => publisher.later(ack),
      },
    );
    // What a previous worker of this host held and never acked: its VMs' later commands wait.
    const held = await order.open();
    if (held) log.info({ from: held.from, to: held.to }, "commands a previous worker held");
    // The last check before commands are pulled: a stop asked for until now pulls none.
    this.#stepDone();
    await this.#consumer.start();
    if (config.http) await this.#serveHttp(config.http);
    if (config.snapshots === "on") {
      this.#snapshotTimer = setInterval(() => void this.snapshot(), config.snapshotIntervalMs);
      this.#snapshotTimer.unref();
    }
    if (config.reconcileIntervalMs > 0) {
      this.#reconcileTimer = setInterval(
        () => void this.#periodicReconcile(),
        config.reconcileIntervalMs,
      );
      this.#reconcileTimer.unref();
    }
  }

  /** Appends an event made from the VM's current state, in the VM's lane (after its commands). */
  appendSerial(vmId: string, make: (vm: Vm) => VmEvent | undefined): Promise<void> {
    const ctx = this.#ctx;
    if (!ctx) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.#lanes.push(vmId, {
        run: async () => {
          try {
            for (let round = 0; round < 8; round++) {
              const vm = ctx.registry.get(vmId);
              const event = make(vm);
              if (!event) break;
              try {
                ctx.registry.apply(event, await ctx.store.append(event, vm.version));
                break;
              } catch (e) {
                if (!isVmqError(e, "event-store::conflict")) throw e;
                await ctx.registry.reload(vmId);
              }
            }
            resolve();
          } catch (e) {
            reject(toVmqError(e));
          }
        },
        abandon: () => resolve(),
      });
    });
  }

  #onObserved(c: ObservedChange): void {
    const ctx = this.#ctx;
    if (!ctx || !ctx.registry.has(c.vmId)) return;
    this.stats.observed++;
    const make = (vm: Vm): VmEvent | undefined => {
      if (vm.pending) return undefined; // our own command explains it; its outcome records the state
      if (vm.state === c.state) return undefined; // nothing changed as far as the history knows
      const id = { now: ctx.now(), eventId: `${vm.vmId}:obs:${ctx.newId()}` };
      // Anything no command explains is a vm.state-observed; a guest's own power-off says so.
      const detail = [c.guestInitiated ? "guest-initiated" : undefined, c.detail]
        .filter(Boolean)
        .join(": ");
      return observed(vm, c.state, c.source, id, {
        ...(detail ? { detail } : {}),
        ...(c.handle ? { handle: c.handle } : {}),
      });
    };
    this.appendSerial(c.vmId, make).catch((e: unknown) =>
      this.log.error({ err: e, vmId: c.vmId }, "could not record an observed change"),
    );
  }

  async #periodicReconcile(): Promise<void> {
    const ctx = this.#ctx;
    if (!ctx || this.#state !== "running" || !this.#reconciler || this.#reconciling) return;
    this.#reconciling = true;
    try {
      await this.#reconcilePass(ctx);
    } finally {
      this.#reconciling = false;
    }
  }

  /** One VM at a time, each in its lane (after its commands). */
  async #reconcilePass(ctx: WorkerContext): Promise<void> {
    for (const vm of ctx.registry.all()) {
      if (this.#state !== "running") return; // a drain has begun: add no more work
      // A pending intent is reconciled only once its deadline has passed: a command still
      // running in its lane records its own outcome.
      const stale = vm.pending !== null && Date.parse(vm.pending.deadline) < Date.now();
      if ((vm.pending && !stale) || vm.state === null || (vm.state === "destroyed" && !stale))
        continue;
      await new Promise<void>((resolve) =>
        this.#lanes.push(vm.vmId, {
          run: async () => {
            await this.#reconciler?.reconcile(vm.vmId, { adopt: false }).catch(() => false);
            resolve();
          },
          abandon: resolve,
        }),
      );
    }
  }

  /** Why the worker is not ready (empty when it is). */
  notReady(): string[] {
    const why: string[] = [];
    if (this.#state !== "running") why.push(`worker is ${this.#state}`);
    if (!this.replayed) why.push("not replayed and reconciled yet");
    if (!this.connected) why.push("NATS is away (degraded)");
    else if (this.#consumer && !this.#consumer.running && this.#state === "running")
      why.push("the command consumer is being restarted (degraded)");
    return why;
  }

  async #serveHttp(listen: string): Promise<void> {
    const { registry, observeDuration } = createMetrics({
      commands: () => this.stats.commands,
      counters: () => this.stats,
      inFlight: () => this.stats.inFlight,
      queued: () => this.#lanes.queued,
      waiting: () => this.#ctx?.order.waiting ?? 0,
      vmsByState: () => {
        const out: Record<string, number> = {};
        for (const vm of this.#ctx?.registry.all() ?? [])
          if (vm.state) out[vm.state] = (out[vm.state] ?? 0) + 1;
        return out;
      },
      natsConnected: () => this.connected,
      workerState: () => this.#state,
      replay: () => ({
        ms: this.stats.replayMs,
        events: this.stats.replayedEvents,
        from: this.stats.replayFrom,
      }),
    });
    this.stats.onDuration = observeDuration;
    this.#http = await startHttp(listen, registry, {
      alive: () => this.#state !== "failed",
      notReady: () => this.notReady(),
    });
    const a = this.#http.address();
    this.httpPort = typeof a === "object" && a ? a.port : undefined;
    this.log.info({ listen, port: this.httpPort }, "serving /metrics, /healthz, /readyz");
  }

  /**
   * Snapshots the VMs changed since the last one, tied to the registry's last sequence. Only
   * when no lane is busy: then every event of this host up to that sequence is applied.
   */
  async snapshot(): Promise<boolean> {
    const ctx = this.#ctx;
    if (!ctx || !this.#snapshots || this.#snapshotting) return false;
    if (this.#lanes.running > 0 || this.#lanes.queued > 0) return false;
    const reg = ctx.registry;
    if (reg.changedSinceSnapshot.size === 0) return false;
    this.#snapshotting = true;
    const seq = reg.lastSeq;
    const changed = [...reg.changedSinceSnapshot];
    reg.changedSinceSnapshot.clear();
    try {
      const chunks = await this.#snapshots.save(ctx.host, reg.all(), changed, seq);
      this.log.info({ seq, vms: reg.size, changed: changed.length, chunks }, "snapshot written");
      return true;
    } catch (e) {
      for (const id of changed) reg.changedSinceSnapshot.add(id);
      this.log.warn({ err: e }, "snapshot failed; the next one retries");
      return false;
    } finally {
      this.#snapshotting = false;
    }
  }

  #watchConnection(nc: NatsConnection, connection: "commands" | "events"): void {
    void (async () => {
      for await (const s of nc.status()) {
        if (s.type === "disconnect") {
          this.#away.add(connection);
          this.log.warn({ server: s.server, connection }, "NATS disconnected; reconnecting");
        } else if (s.type === "reconnect") {
          this.#away.delete(connection);
          this.log.info({ server: s.server, connection }, "NATS reconnected");
          // Messages in flight at the disconnect come back only after ack_wait: keep order.
          if (connection === "commands")
            this.#ctx?.order
              .open()
              .catch((e: unknown) =>
                this.log.warn({ err: e }, "could not read the consumer state"),
              );
        }
      }
    })();
  }

  /**
   * Stops fetching, waits up to drainTimeoutMs for in-flight commands, abandons the rest with
   * their intents recorded (they are redelivered to the next worker of this host), then closes.
   */
  async drain(): Promise<void> {
    if (this.#state === "draining" || this.#state === "stopped") return this.#stopped;
    if (this.#state === "failed") return this.#stopped; // start() has torn down already
    if (this.#state === "starting") {
      if (!this.#startCalled) {
        this.#setState("stopped");
        return this.#stopped;
      }
      if (!this.#stopWhileStarting.signal.aborted)
        this.log.info("stop asked for while starting: stopping after the current start-up step");
      this.#stopWhileStarting.abort();
      return this.#stopped;
    }
    await this.#drainNow();
  }

  /** Ends start() at a step boundary once a stop was asked for (caught in start()). */
  #stepDone(): void {
    this.#stopWhileStarting.signal.throwIfAborted();
  }

  async #drainNow(): Promise<void> {
    this.#setState("draining");
    this.log.info({ inFlight: this.#lanes.running, queued: this.#lanes.queued }, "draining");
    clearInterval(this.#reconcileTimer);
    clearInterval(this.#snapshotTimer);
    await this.#bounded(this.#consumer?.stop(), "stopping the command consumer");
    const nakked = this.#lanes.abandonQueued();
    const finished = await Promise.race([
      this.#lanes.idle().then(() => true),
      new Promise<boolean>((r) => setTimeout(() => r(false), this.config.drainTimeoutMs).unref()),
    ]);
    if (!finished) {
      this.log.warn(
        { inFlight: this.#lanes.running },
        "drain timeout: abandoning in-flight commands (intents stay recorded)",
      );
      this.#abandon.abort(new Error("drained"));
      await this.#lanes.idle();
    }
    this.log.info({ requeued: nakked }, "drained");
    if (finished && this.replayed && this.config.snapshots === "on") await this.snapshot();
    await this.#teardown();
    this.#setState("stopped");
  }

  /** Same as drain; kept for symmetry with other workers' APIs. */
  close(): Promise<void> {
    return this.drain();
  }

  async #teardown(): Promise<void> {
    this.#http?.close();
    this.#unwatch?.();
    await this.#bounded(this.#mover?.stop(), "stopping the DLQ mover");
    this.#queries?.unsubscribe();
    this.#console?.unsubscribe();
    await this.#bounded(this.#heartbeat?.stop(true), "removing the host record");
    await this.#bounded(this.#ctx?.registry.flushView(), "writing the last view records");
    await this.#bounded(this.router.close(), "closing the backends");
    this.#publisher?.close();
    for (const nc of [this.#writeNc, this.#nc]) {
      if (!nc || nc.isClosed()) continue;
      if (!(await this.#bounded(nc.drain(), "draining a NATS connection"))) await nc.close();
    }
    await this.#embedded?.stop();
  }

  /**
   * Waits for one shutdown step, at most 10 s: a step stuck on a dead server or a stalled
   * iterator must not keep the process from exiting. False when it failed or timed out.
   */
  async #bounded(step: Promise<unknown> | undefined, what: string): Promise<boolean> {
    if (!step) return true;
    let timer: NodeJS.Timeout | undefined;
    const ok = await Promise.race([
      step.then(
        () => true,
        (e: unknown) => {
          this.log.warn({ err: e }, `shutdown: ${what} failed`);
          return false;
        },
      ),
      new Promise<boolean>((r) => {
        timer = setTimeout(() => {
          this.log.warn(`shutdown: ${what} took over 10 s; going on`);
          r(false);
        }, 10_000);
      }),
    ]);
    clearTimeout(timer);
    return ok;
  }

  #setState(s: WorkerState): void {
    const prev = this.#state;
    this.#state = s;
    if (s === "stopped" || s === "failed") this.#resolveStopped();
    for (const l of this.#listeners) l(s, prev);
  }
}

/** One listener per in-flight command is expected, not a leak: lift Node's warning at 10. */
function unlimitedListeners(ac: AbortController): AbortController {
  setMaxListeners(0, ac.signal);
  return ac;
}
