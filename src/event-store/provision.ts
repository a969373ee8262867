import {
  AckPolicy,
  DeliverPolicy,
  JetStreamApiError,
  RetentionPolicy,
  StorageType,
  type JetStreamManager,
  type StreamConfig,
  type StreamInfo,
} from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import { Objm } from "@nats-io/obj";
import type { NatsConnection } from "@nats-io/transport-node";
import { MAX_COMMAND_MESSAGE_BYTES } from "../contracts/commands.js";
import { CANCEL_TTL_MS } from "../contracts/cancels.js";
import type { Names } from "../contracts/subjects.js";
import { VmqError } from "../lib/errors.js";

const ns = (ms: number): number => ms * 1_000_000;

export interface TopologyOptions {
  /** Stream replicas (3 in a NATS cluster). */
  replicas?: number;
  /** How long VMQ_COMMANDS keeps commands (the audit trail), and how many bytes at most. */
  commandsMaxAgeMs?: number;
  commandsMaxBytes?: number;
  /** How long VMQ_DLQ keeps dead letters, and how many bytes at most. */
  dlqMaxAgeMs?: number;
  dlqMaxBytes?: number;
  /** Told when an existing stream's limits were brought to these (or could not be). */
  onLimits?: (stream: string, change: string) => void;
  /** The JetStream duplicate window (msgID dedupe; idempotency beyond it comes from history). */
  duplicateWindowMs?: number;
  /** How long a host record lives without a heartbeat. */
  hostTtlMs?: number;
}

export interface ConsumerOptions {
  ackWaitMs: number;
  maxDeliver: number;
  maxAckPending: number;
  /** Where a consumer created now starts (default: the stream's first command). */
  startSeq?: number | undefined;
  /** Told what was changed when an existing consumer's tunables differ from these. */
  onUpdate?: (changes: string[]) => void;
}

export interface Topology {
  vms: KV;
  hosts: KV;
  snapshots: KV;
  tombstones: KV;
  /** One key per host id: its active worker (create / compare-and-set; see docs/lease.md). */
  leases: KV;
  /** Cancels of queued commands, `<host>.<hex commandId>`, with a TTL (contracts/cancels.ts). */
  cancels: KV;
  /** Cold moves' records, one per vmId (contracts/moves.ts). */
  moves: KV;
}

/** The advisory subjects the DLQ mover listens to, captured by a stream so none is missed. */
export const advisoryStream = (names: Names): string => `${names.commandsStream}_ADVISORIES`;
export const maxDeliveriesSubject = (names: Names): string =>
  `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.${names.commandsStream}.*`;

/**
 * Creates what is missing and verifies what exists, idempotently; incompatible settings are a
 * clear error, never a silent change.
 */
export async function ensureTopology(
  nc: NatsConnection,
  jsm: JetStreamManager,
  names: Names,
  opts: TopologyOptions = {},
): Promise<Topology> {
  const replicas = opts.replicas ?? 1;
  const dupe = ns(opts.duplicateWindowMs ?? 120_000);
  await ensureStream(
    jsm,
    {
      name: names.commandsStream,
      subjects: [`${names.prefix}.cmd.>`],
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      max_age: ns(opts.commandsMaxAgeMs ?? 7 * 24 * 3_600_000),
      max_bytes: opts.commandsMaxBytes ?? -1,
      // Oversized commands are refused at the door: the publisher gets an error at once.
      max_msg_size: MAX_COMMAND_MESSAGE_BYTES,
      duplicate_window: dupe,
      num_replicas: replicas,
    },
    opts.onLimits,
  );
  await ensureStream(jsm, {
    name: names.eventsStream,
    subjects: [`${names.prefix}.evt.>`],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    max_age: 0,
    duplicate_window: dupe,
    allow_direct: true,
    // Compaction deletes a VM's events by sequence (vm-purge.ts); purges stay allowed too.
    deny_delete: false,
    num_replicas: replicas,
  });
  await ensureStream(
    jsm,
    {
      name: names.dlqStream,
      subjects: [`${names.prefix}.dlq.>`],
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      max_age: ns(opts.dlqMaxAgeMs ?? 30 * 24 * 3_600_000),
      max_bytes: opts.dlqMaxBytes ?? -1,
      duplicate_window: dupe,
      num_replicas: replicas,
    },
    opts.onLimits,
  );
  await ensureStream(jsm, {
    name: advisoryStream(names),
    subjects: [maxDeliveriesSubject(names)],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    max_age: ns(7 * 24 * 3_600_000),
    num_replicas: replicas,
  });
  const kvm = new Kvm(nc);
  const hostTtlMs = opts.hostTtlMs ?? 30_000;
  const vms = await kvm.create(names.vmsBucket, {
    history: 1,
    storage: StorageType.File,
    replicas,
  });
  await checkBucket(jsm, names.vmsBucket, { ttlMs: 0 });
  const hosts = await kvm.create(names.hostsBucket, {
    history: 1,
    storage: StorageType.File,
    replicas,
    ttl: hostTtlMs,
  });
  await checkBucket(jsm, names.hostsBucket, { ttlMs: hostTtlMs });
  const snapshots = await kvm.create(names.snapshotsBucket, {
    history: 1,
    storage: StorageType.File,
    replicas,
  });
  await checkBucket(jsm, names.snapshotsBucket, { ttlMs: 0 });
  const tombstones = await kvm.create(names.tombstonesBucket, {
    history: 1,
    storage: StorageType.File,
    replicas,
  });
  await checkBucket(jsm, names.tombstonesBucket, { ttlMs: 0 });
  // No bucket TTL: a lease expires by its holder's silence as a standby measures it, never by
  // a server clock the holder cannot see.
  const leases = await kvm.create(names.leasesBucket, {
    history: 1,
    storage: StorageType.File,
    replicas,
  });
  await checkBucket(jsm, names.leasesBucket, { ttlMs: 0 });
  // Cancels matter while their command may still be queued: as long as the commands stream
  // keeps a command by default; expired ones are simply gone.
  const cancels = await kvm.create(names.cancelsBucket, {
    history: 1,
    storage: StorageType.File,
    replicas,
    ttl: CANCEL_TTL_MS,
  });
  await checkBucket(jsm, names.cancelsBucket, { ttlMs: CANCEL_TTL_MS });
  // Cold moves' records (vmq move): the SDK writes them; a worker creates the bucket and reads
  // a record before starting a VM whose disk a move exported (vm::moving).
  const moves = await kvm.create(names.movesBucket, {
    history: 1,
    storage: StorageType.File,
    replicas,
  });
  await checkBucket(jsm, names.movesBucket, { ttlMs: 0 });
  // Base images (docs/wire-contract.md, Images): created if missing, file storage checked.
  await new Objm(nc).create(names.imagesBucket, { storage: StorageType.File, replicas });
  await checkBucket(jsm, names.imagesBucket, { ttlMs: 0 }, "OBJ_");
  return { vms, hosts, snapshots, tombstones, leases, cancels, moves };
}

/**
 * `kvm.create` binds to an existing bucket whatever its settings, so they are checked here:
 * memory storage loses the view on a server restart, an expiry on `vms` or `snapshots` would
 * drop records, and the `hosts` TTL is what says a host stopped beating.
 */
async function checkBucket(
  jsm: JetStreamManager,
  bucket: string,
  want: { ttlMs: number },
  streamPrefix = "KV_",
): Promise<void> {
  const c = (await jsm.streams.info(`${streamPrefix}${bucket}`)).config;
  const problems: string[] = [];
  if (c.storage !== StorageType.File)
    problems.push(`storage is ${c.storage}, vmq needs file storage`);
  if (c.max_age !== ns(want.ttlMs)) {
    const have = c.max_age > 0 ? `${c.max_age / 1e6} ms` : "none";
    const need = want.ttlMs > 0 ? `${want.ttlMs} ms` : "none";
    problems.push(`its TTL is ${have}, vmq needs ${need}`);
  }
  if (problems.length) {
    throw new VmqError(
      "nats::incompatible-bucket",
      `KV bucket ${bucket} exists with incompatible settings: ${problems.join("; ")}`,
      {
        hint: `Fix or remove bucket ${bucket} (nats kv info ${bucket}; the workers rewrite it), or start the workers with matching settings (--host-ttl-ms) or another --prefix.`,
      },
    );
  }
}

async function ensureStream(
  jsm: JetStreamManager,
  want: Partial<StreamConfig> & { name: string; subjects: string[] },
  onLimits?: (stream: string, change: string) => void,
): Promise<StreamInfo> {
  let info: StreamInfo;
  try {
    info = await jsm.streams.info(want.name);
  } catch (e) {
    if (e instanceof JetStreamApiError && e.code === 10059) return jsm.streams.add(want);
    throw e;
  }
  const have = info.config;
  const problems: string[] = [];
  if (JSON.stringify([...have.subjects].sort()) !== JSON.stringify([...want.subjects].sort())) {
    problems.push(
      `subjects are ${JSON.stringify(have.subjects)}, vmq needs ${JSON.stringify(want.subjects)}`,
    );
  }
  if (have.storage !== StorageType.File)
    problems.push(`storage is ${have.storage}, vmq needs file storage`);
  if (have.retention !== RetentionPolicy.Limits)
    problems.push(`retention is ${have.retention}, vmq needs limits`);
  if (want.allow_direct && !have.allow_direct)
    problems.push("allow_direct is off, vmq needs it on");
  if (have.max_msgs_per_subject > 0)
    problems.push(`max_msgs_per_subject is ${have.max_msgs_per_subject}: it would drop VM history`);
  if (
    want.name.endsWith("_EVENTS") &&
    have.max_age > 0 &&
    have.max_age < ns(365 * 24 * 3_600_000)
  ) {
    problems.push("max_age would expire VM history; vmq keeps events until you decide otherwise");
  }
  if (problems.length === 0 && onLimits) return updateLimits(jsm, info, want, onLimits);
  if (problems.length) {
    throw new VmqError(
      "nats::incompatible-stream",
      `stream ${want.name} exists with incompatible settings: ${problems.join("; ")}`,
      {
        hint: `Fix or remove stream ${want.name} (nats stream info ${want.name}), or use another --prefix.`,
      },
    );
  }
  return info;
}

/** The host's durable pull consumer; tunables are updated, a different filter is an error. */
export async function ensureConsumer(
  jsm: JetStreamManager,
  names: Names,
  host: string,
  opts: ConsumerOptions,
): Promise<string> {
  const durable = names.durable(host);
  const filter = names.cmdFilter(host);
  const want = {
    durable_name: durable,
    filter_subject: filter,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    ack_wait: ns(opts.ackWaitMs),
    max_deliver: opts.maxDeliver,
    max_ack_pending: opts.maxAckPending,
  };
  try {
    const info = await jsm.consumers.info(names.commandsStream, durable);
    const c = info.config;
    if (
      c.filter_subject !== filter ||
      c.ack_policy !== AckPolicy.Explicit ||
      (c.deliver_subject ?? "") !== ""
    ) {
      throw new VmqError(
        "nats::incompatible-consumer",
        `consumer ${durable} on ${names.commandsStream} exists with filter ${c.filter_subject ?? "(none)"} / ack ${c.ack_policy}; vmq needs a pull consumer on ${filter} with explicit acks`,
        {
          hint: `Delete it (nats consumer rm ${names.commandsStream} ${durable}); its position is kept in the stream's history.`,
        },
      );
    }
    const changes = [
      c.ack_wait !== want.ack_wait
        ? `ack_wait ${(c.ack_wait ?? 0) / 1e6} -> ${opts.ackWaitMs} ms`
        : "",
      c.max_deliver !== want.max_deliver
        ? `max_deliver ${c.max_deliver} -> ${want.max_deliver}`
        : "",
      c.max_ack_pending !== want.max_ack_pending
        ? `max_ack_pending ${c.max_ack_pending} -> ${want.max_ack_pending}`
        : "",
    ].filter(Boolean);
    if (changes.length) {
      // Tunables follow the worker's flags (the filter and ack policy never change): said, not silent.
      opts.onUpdate?.(changes);
      await jsm.consumers.update(names.commandsStream, durable, {
        ack_wait: want.ack_wait,
        max_deliver: want.max_deliver,
        max_ack_pending: want.max_ack_pending,
      });
    }
  } catch (e) {
    if (!(e instanceof JetStreamApiError && e.code === 10014)) throw e;
    await jsm.consumers.add(
      names.commandsStream,
      opts.startSeq
        ? { ...want, deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: opts.startSeq }
        : want,
    );
  }
  return durable;
}

/**
 * The age and size limits of the commands and DLQ streams follow the worker's flags (and the
 * commands' message size the contract's limit): a limit is safe to change on a live stream. Without the right to (an administrator provisioned it), the
 * stream keeps its own, and that is said.
 */
async function updateLimits(
  jsm: JetStreamManager,
  info: StreamInfo,
  want: Partial<StreamConfig> & { name: string },
  onLimits: (stream: string, change: string) => void,
): Promise<StreamInfo> {
  const have = info.config;
  const changes: string[] = [];
  if (want.max_age !== undefined && have.max_age !== want.max_age)
    changes.push(`max_age ${have.max_age / 1e6} -> ${want.max_age / 1e6} ms`);
  if (want.max_bytes !== undefined && have.max_bytes !== want.max_bytes)
    changes.push(`max_bytes ${have.max_bytes} -> ${want.max_bytes}`);
  if (want.max_msg_size !== undefined && have.max_msg_size !== want.max_msg_size)
    changes.push(`max_msg_size ${have.max_msg_size} -> ${want.max_msg_size}`);
  if (changes.length === 0) return info;
  try {
    const updated = await jsm.streams.update(want.name, {
      ...(want.max_age !== undefined ? { max_age: want.max_age } : {}),
      ...(want.max_bytes !== undefined ? { max_bytes: want.max_bytes } : {}),
      ...(want.max_msg_size !== undefined ? { max_msg_size: want.max_msg_size } : {}),
    });
    onLimits(want.name, changes.join(", "));
    return updated;
  } catch (e) {
    onLimits(want.name, `kept (${changes.join(", ")} refused: ${(e as Error).message})`);
    return info;
  }
}
