import { randomUUID } from "node:crypto";
import {
  commandVmToken,
  names as namesFor,
  parseCommand,
  type WorkerState,
} from "../contracts/index.js";
import type { ResolvedConfig } from "../config/config.js";
import { JetStreamEventStore } from "../event-store/jetstream-event-store.js";
import { ensureConsumer, ensureTopology } from "../event-store/provision.js";
import { SnapshotStore } from "../event-store/snapshots.js";
import type { HypervisorRouter } from "../hypervisor/index.js";
import type { Logger } from "../observability/logger.js";
import { createMetrics } from "../observability/metrics.js";
import { serveConsole } from "./console-relay.js";
import { CommandConsumer } from "./consumer/command-consumer.js";
import { CommandPipeline } from "./consumer/command-pipeline.js";
import type { Lanes } from "./consumer/lanes.js";
import { commandReaderName } from "../contracts/permissions.js";
import { jetStreamCommandLog } from "./nats/command-log.js";
import { CommandReader } from "./nats/command-reader.js";
import { jetStreamDeadLetters, maxPayload } from "./nats/dead-letters.js";
import { kvFleetView } from "./nats/fleet-view.js";
import { kvMoveChecks } from "./nats/move-checks.js";
import { ViewDrop } from "./nats/view-drop.js";
import { fencedRouter } from "./lease/fenced-router.js";
import { HostLease } from "./lease/host-lease.js";
import { holderId } from "./lease/holder-id.js";
import { evacuatedVmIds, removeEvacuated } from "./lease/evacuated.js";
import { kvTombstones } from "./nats/tombstones.js";
import type { NatsLink } from "./nats/nats-link.js";
import { KvViewWriter } from "./nats/view-writer.js";
import { CancelWatch } from "./nats/cancel-watch.js";
import type { DataDirLock } from "./data-dir-lock.js";
import { CommandHandler } from "./pipeline/command-handler.js";
import { OrderGate } from "./pipeline/order-gate.js";
import { systemClock, type Ids } from "./ports.js";
import { loadHostKey, type HostKey } from "./secrets/host-key.js";
import type { Service, ServiceStack } from "./service-stack.js";
import type { KV } from "@nats-io/kv";
import type { ObjectStore } from "@nats-io/obj";
import type { NatsConnection } from "@nats-io/transport-node";
import { imageChunks, openImageBucket } from "../event-store/image-bucket.js";
import { JetStreamDiskSink } from "./images/disk-sink.js";
import { ImageCache, imageCacheDir } from "./images/image-cache.js";
import { Compactor } from "./services/compactor.js";
import { DlqMover } from "./services/dlq-mover.js";
import { Heartbeat } from "./services/heartbeat.js";
import { HttpService } from "./services/http.js";
import { Observer } from "./services/observer.js";
import { serveQueries } from "./services/queries.js";
import { Reconciler } from "./services/reconciler.js";
import { HostState } from "./state/host-state.js";
import { Snapshotter } from "./state/snapshotter.js";
import { ViewProjector } from "./state/view-projector.js";
import { VmStreams, type Decide } from "./state/vm-streams.js";
import type { WorkerStats } from "./stats.js";

const ids: Ids = { newId: () => randomUUID() };

/** What the worker owns before it starts, and what it tells the services about itself. */
export interface WorkerCore {
  config: ResolvedConfig;
  log: Logger;
  router: HypervisorRouter;
  stats: WorkerStats;
  lanes: Lanes;
  link: NatsLink;
  /** The data dir's lock, taken before anything else starts. */
  lock: DataDirLock;
  /** Aborted when a drain gives up on in-flight commands. */
  abandon: AbortController;
  state: () => WorkerState;
  /** Draining (a last snapshot is for a stop, not a failure). */
  draining: () => boolean;
  alive: () => boolean;
  notReady: () => string[];
  /** Another worker of this host took its lease: this one must stop. */
  leaseLost: (why: string) => void;
}

/** The parts start-up built that the worker reads (filled in as they start). */
export interface Parts {
  streams?: VmStreams;
  order?: OrderGate;
  heartbeat?: Heartbeat;
  http?: HttpService;
  consumer?: CommandConsumer;
  pipeline?: CommandPipeline;
  snapshotter?: Snapshotter | undefined;
  lease?: HostLease;
  view?: KvViewWriter;
  hostKey?: HostKey;
  /** Replayed and reconciled: ready to take commands. */
  replayed?: boolean;
}

/**
 * Starts the worker's services in order on `stack` (which stops them in reverse): the data
 * dir's lock, HTTP, NATS, the backends, provisioning, the host lease (a standby waits here),
 * the host's VMs (snapshot + replay), the reconcile, observed changes, heartbeat, queries and
 * console, the DLQ mover, and last the command consumer.
 */
export async function assemble(stack: ServiceStack, w: WorkerCore, parts: Parts): Promise<void> {
  const { config, log, router, stats, lanes } = w;
  const names = namesFor(config.prefix);
  // The data dir first, before anything touches it (the embedded nats-server's store is in
  // it); a key file others may read stops the start there too; then HTTP, so a taken port
  // fails before NATS and /readyz can say it waits for NATS (or, later, that it is a standby
  // waiting for the host's lease).
  await stack.start(w.lock);
  const hostKey = await stack.timed("host key", () =>
    loadHostKey({
      dataDir: config.dataDir,
      ...(config.hostKeyFile ? { file: config.hostKeyFile } : {}),
    }),
  );
  parts.hostKey = hostKey;
  log.info(
    { userDataKey: hostKey.publicKey, file: hostKey.file, created: hostKey.created },
    "host key for sealed user-data",
  );
  if (config.http)
    parts.http = await stack.start(httpService(config.http, w, parts, () => stack.timings));
  const link = await stack.start(w.link);
  await stack.start(service("backends", () => () => router.close()));
  const jsm = await link.jsm();
  const js = link.js;
  log.debug("connected; provisioning");
  const topology = await stack.timed("provisioning", () =>
    ensureTopology(link.commands, jsm, names, {
      replicas: config.replicas,
      hostTtlMs: config.hostTtlMs,
      commandsMaxAgeMs: config.commandsMaxAgeMs,
      commandsMaxBytes: config.commandsMaxBytes,
      dlqMaxAgeMs: config.dlqMaxAgeMs,
      dlqMaxBytes: config.dlqMaxBytes,
      onLimits: (stream, change) => log.info({ stream, change }, "stream limits"),
    }),
  );
  // Set before it starts: while its start() waits as a standby, /readyz says so.
  parts.lease = await stack.timed("lease set-up", () => hostLease(stack, w, topology));
  await stack.start(parts.lease);
  const consumerOptions = {
    ackWaitMs: config.ackWaitMs,
    maxDeliver: config.maxDeliver,
    maxAckPending: config.maxAckPending,
    onUpdate: (changes: string[]) =>
      log.warn({ changes }, "updating the host's consumer to this worker's settings"),
  };
  const durable = await stack.timed("consumer", () =>
    ensureConsumer(jsm, names, config.host, consumerOptions),
  );

  const store = new JetStreamEventStore(js, names, {
    publisher: link.publisher,
    connection: link.commands,
  });
  store.purger.onDeletesDenied = () =>
    log.warn(
      { stream: names.eventsStream },
      "the events stream denies message deletes (deny_delete, set by vmq before 0.1.0's compaction by sequence): compaction purges by subject, which costs the server more per VM",
    );
  const viewDrop = new ViewDrop(topology.vms, jsm, names.vmsBucket, (err) => {
    stats.purgeRefused++;
    log.warn(
      { err, bucket: names.vmsBucket },
      "no right to purge the view bucket: each compacted VM leaves a purge marker there, and fleet-wide reads slow as they pile up (grant it with vmq permissions --compaction)",
    );
  });
  const dropView = (vmId: string) => viewDrop.drop(names.viewKey(config.host, vmId));
  const streams = new VmStreams(config.host, store, {
    log,
    onConflict: () => stats.conflicts++,
    tombstones: kvTombstones(topology.tombstones, config.host),
  });
  parts.streams = streams;
  parts.view = new KvViewWriter(link.publisher, topology.vms, names.vmsBucket, config.host, log);
  // VMs evacuated while this host was dead: their view records are their new host's now.
  const evacuated = evacuatedVmIds(parts.lease.evacuation);
  const writer = parts.view;
  const view = new ViewProjector(
    streams,
    evacuated.size === 0
      ? writer
      : {
          write: (id, json, seq) => (evacuated.has(id) ? undefined : writer.write(id, json, seq)),
          flush: () => writer.flush(),
          expectStored: (ids) => writer.expectStored(ids),
        },
    log,
    () => lanes.queued > 0,
  );
  const images = await stack.timed("image cache", () => imageCache(w, link.commands, streams));
  const busy = (): boolean => lanes.running > 0 || lanes.queued > 0;
  const snapshotter =
    config.snapshots === "on"
      ? new Snapshotter(new SnapshotStore(topology.snapshots), streams, log, busy)
      : undefined;
  parts.snapshotter = snapshotter;
  const hostState = await stack.start(
    new HostState({
      streams,
      view,
      snapshotter,
      snapshotIntervalMs: config.snapshotIntervalMs,
      // After a clean drain only: an abandoned command's lane may still have been busy.
      snapshotOnStop: () =>
        w.draining() && parts.replayed === true && (parts.pipeline?.drainedCleanly ?? true),
      stats,
      log,
    }),
  );

  const running = (): boolean => w.state() === "running";
  const clock = systemClock;
  const evacuation = parts.lease.evacuation;
  if (evacuation) {
    await removeEvacuated({
      evacuation,
      get: (vmId) => streams.get(vmId),
      update: (vmId, decide) => lanes.run(vmId, () => streams.update(vmId, decide)),
      router,
      clock,
      ids,
      log,
      dropView,
    });
    await parts.lease.clearEvacuation();
  }
  const intervalMs = config.reconcileIntervalMs;
  const imageOf = (vmId: string) => images.imageOf(vmId);
  await stack.start(
    new Reconciler({ streams, router, lanes, clock, ids, log, running, intervalMs, imageOf }),
  );
  // A pin outlives its VM only when a crash came between a destroy and its unpin.
  await images.keepPins((id) => (streams.get(id).state ?? "destroyed") !== "destroyed");
  parts.replayed = true;
  await stack.start(
    new Compactor({
      host: config.host,
      streams,
      store,
      tombstones: kvTombstones(topology.tombstones, config.host),
      dropView,
      lanes,
      clock,
      log,
      stats,
      retentionMs: config.retentionMs,
      intervalMs: config.compactIntervalMs,
      running,
    }),
  );
  void view.flush();
  const updateInLane = (vmId: string, decide: Decide) =>
    lanes.run(vmId, () => streams.update(vmId, decide));
  const heard = () => stats.observed++;
  await stack.start(new Observer({ router, vms: streams, updateInLane, clock, ids, log, heard }));
  parts.heartbeat = await stack.start(
    new Heartbeat({
      ...hostRecordOf(w, topology.hosts),
      vms: streams,
      busy: () => stats.inFlight + lanes.queued,
      role: "active",
      userDataKey: hostKey.publicKey,
    }),
  );
  const api = { host: config.host, names, vms: streams, router, log };
  await stack.start(
    service("queries and console", () => {
      const subs = [serveQueries(link.commands, api), serveConsole(link.commands, api)];
      return () => subs.forEach((s) => s.unsubscribe());
    }),
  );
  const deadLetters = jetStreamDeadLetters(js, names, config.host, () => maxPayload(link.commands));
  // The host's own commands read back (never a stream-wide read by sequence: security.md).
  const reader = new CommandReader(js, jsm, names.commandsStream, commandReaderName(config.host));
  await stack.start(service("command reader", () => () => reader.close()));
  await stack.start(
    new DlqMover({
      host: config.host,
      names,
      js,
      jsm,
      reader,
      vms: streams,
      deadLetters,
      updateInLane,
      clock,
      log,
      deadLettered: () => stats.deadLettered++,
      givenUp: (seq) => parts.consumer?.givenUp(seq),
    }),
  );

  const order = new OrderGate(
    jetStreamCommandLog(jsm, names.commandsStream, durable, reader),
    (data, subject) => {
      const p = parseCommand(data, commandVmToken(subject));
      return p.ok ? p.command : undefined;
    },
    config.ackWaitMs * (config.maxDeliver + 1),
  );
  parts.order = order;
  // Every cancel stored so far is loaded before the first command is taken.
  const cancels = await stack.start(new CancelWatch(js, names, config.host, log));
  const handler = new CommandHandler({
    host: config.host,
    streams,
    router: fencedRouter(router, parts.lease),
    order,
    deadLetters,
    fleet: kvFleetView(jsm, names, config.host, (vmId) => view.markDirty(vmId)),
    moves: kvMoveChecks(topology.moves),
    clock,
    ids,
    stats,
    log,
    abandon: w.abandon.signal,
    limits: {
      maxAttempts: config.maxAttempts,
      maxDeliver: config.maxDeliver,
      // A command a dead worker held comes back after ack_wait; a stop keeps room for that.
      stopCrashAllowanceMs: config.ackWaitMs,
    },
    hostKey,
    cancels,
    images,
    disks: new JetStreamDiskSink(js, names.imagesBucket, log.child({ component: "disks" })),
  });
  parts.consumer = new CommandConsumer(js, names.commandsStream, durable, lanes, handler, log, {
    ackWaitMs: config.ackWaitMs,
    batch: Math.min(config.maxAckPending, Math.max(64, config.concurrency * 8)),
    recreate: (startSeq) =>
      ensureConsumer(jsm, names, config.host, { ...consumerOptions, startSeq }),
    onRestart: () => stats.consumerRestarts++,
    send: (settle) => link.publisher.later(settle),
    queued: (vmKey) => streams.prefetch(vmKey),
  });
  parts.pipeline = await stack.start(
    new CommandPipeline({
      consumer: parts.consumer,
      order,
      lanes,
      abandon: w.abandon,
      drainTimeoutMs: config.drainTimeoutMs,
      log,
    }),
  );
  hostState.rewriteView();
}

/**
 * The host's lease. While it waits as a standby the worker says so in `vmq-hosts` under
 * `<host>.standby.<instance>` (the active worker's record stays under `<host>`).
 */
async function hostLease(
  stack: ServiceStack,
  w: WorkerCore,
  topology: { leases: KV; hosts: KV },
): Promise<HostLease> {
  const { config, log } = w;
  const holder = await holderId(config.dataDir);
  const standby = new Heartbeat({
    ...hostRecordOf(w, topology.hosts),
    key: `${config.host}.standby.${holder.slice(0, 8)}`,
    role: "standby",
    vms: { all: () => [] },
    busy: () => 0,
  });
  await stack.start(service("standby record", () => () => standby.stop()));
  return new HostLease({
    host: config.host,
    kv: topology.leases,
    ttlMs: config.leaseTtlMs,
    holder,
    log,
    onRole: (role) => void (role === "standby" ? standby.start() : standby.stop()),
    onLost: w.leaseLost,
  });
}

/** The host image cache under <data-dir>/images, read from the images bucket on first use. */
async function imageCache(
  w: WorkerCore,
  nc: NatsConnection,
  streams: VmStreams,
): Promise<ImageCache> {
  const { config, log, stats } = w;
  let bucket: Promise<ObjectStore> | undefined;
  const cache = new ImageCache({
    dir: imageCacheDir(config.dataDir),
    maxBytes: config.imageCacheMaxMb * 1024 * 1024,
    bucket: () =>
      (bucket ??= openImageBucket(nc, namesFor(config.prefix)).catch((e: unknown) => {
        bucket = undefined; // not cached: the next prepare tries again
        throw e;
      })),
    chunks: (r) => imageChunks(nc, namesFor(config.prefix), r),
    inUse: () =>
      streams
        .all()
        .filter((vm) => vm.state !== "destroyed")
        .flatMap((vm) => (vm.handle?.imageDigest ? [vm.handle.imageDigest] : [])),
    log: log.child({ component: "images" }),
    stats: stats.images,
  });
  await cache.start();
  return cache;
}

/** What the active worker's host record and a standby's share: who and what this host is. */
function hostRecordOf(w: WorkerCore, hosts: KV) {
  const { config, log, router } = w;
  return {
    host: config.host,
    hosts,
    router,
    labels: config.labels,
    concurrency: config.concurrency,
    intervalMs: config.heartbeatMs,
    accelerator: acceleratorOf(router),
    state: w.state,
    log,
  };
}

/** /metrics, /healthz and /readyz; the metrics read the worker's counters at scrape time. */
function httpService(
  listen: string,
  w: WorkerCore,
  parts: Parts,
  startSteps: () => readonly { step: string; ms: number }[],
): HttpService {
  const { stats } = w;
  const { registry, observeDuration } = createMetrics({
    commands: () => stats.commands,
    counters: () => stats,
    images: () => stats.images,
    inFlight: () => stats.inFlight,
    queued: () => w.lanes.queued,
    waiting: () => parts.order?.waiting ?? 0,
    vmsByState: () => {
      const out: Record<string, number> = {};
      for (const vm of parts.streams?.all() ?? [])
        if (vm.state) out[vm.state] = (out[vm.state] ?? 0) + 1;
      return out;
    },
    natsConnected: () => w.link.connected,
    workerState: w.state,
    replay: () => ({ ms: stats.replayMs, events: stats.replayedEvents, from: stats.replayFrom }),
    startSteps,
    streams: async () => {
      const jsm = await w.link.jsm();
      const n = namesFor(w.config.prefix);
      const names = [n.commandsStream, n.eventsStream, n.dlqStream, `KV_${n.vmsBucket}`];
      return Promise.all(
        [...names, `KV_${n.tombstonesBucket}`].map(async (stream) => {
          const { state, config } = await jsm.streams.info(stream);
          return {
            stream,
            messages: state.messages,
            bytes: state.bytes,
            maxBytes: config.max_bytes,
            maxAgeMs: config.max_age / 1e6,
          };
        }),
      );
    },
  });
  stats.onDuration = observeDuration;
  return new HttpService(listen, registry, { alive: w.alive, notReady: w.notReady }, w.log);
}

/** The QEMU backend's accelerator, for the host record. */
function acceleratorOf(router: HypervisorRouter): "kvm" | "tcg" | undefined {
  const qemu = router.has("qemu") ? router.backend("qemu") : undefined;
  return qemu && "accelerator" in qemu && (qemu.accelerator === "kvm" || qemu.accelerator === "tcg")
    ? qemu.accelerator
    : undefined;
}

/** A service made of a start step that returns its stop. */
function service(name: string, start: () => (() => unknown) | void): Service {
  let stop: (() => unknown) | void;
  return {
    name,
    start: () => {
      stop = start();
      return Promise.resolve();
    },
    stop: async () => {
      await stop?.();
    },
  };
}
