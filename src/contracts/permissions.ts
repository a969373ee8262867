import { names as namesFor } from "./subjects.js";

/**
 * NATS permissions (nats-server `permissions` block, or a user JWT's pub/sub) for each vmq role,
 * derived from the same names the worker and the SDK use. They are tested against a real
 * nats-server (test/integration/least-privilege.test.ts) and printed by `vmq permissions`
 * (src/cli/commands/permissions.ts); docs/security.md shows them for the default prefix.
 */
export interface NatsPermissions {
  publish: { allow: string[]; deny?: string[] };
  subscribe: { allow: string[]; deny?: string[] };
  /** Lets the holder reply to requests it received (the worker's queries), and nothing else. */
  allow_responses?: boolean;
}

export interface PermissionOptions {
  /**
   * Also allow creating the shared streams and buckets when they are missing (the first worker
   * of a fleet provisions them). An existing stream cannot be changed by a create: a different
   * configuration is refused by the server. Default true; false once an admin has provisioned.
   */
  provision?: boolean;
  /**
   * Also allow purging the events stream, which compaction needs to bound it. NATS scopes a
   * purge by stream only (the subject is in the request's body), so this lets the host purge
   * any host's events: off by default. Without it the worker still writes tombstones and
   * forgets compacted VMs, and their events stay until an admin purges them (security.md).
   */
  compaction?: boolean;
}

const API = "$JS.API";

/** The inbox prefix of a host's worker: replies to it never land in another host's inboxes. */
export const workerInboxPrefix = (host: string): string => `_INBOX_${host}`;

/**
 * The ephemeral consumer through which a host's worker reads its own commands back (the order
 * gate's earlier commands, the DLQ mover's exhausted ones): it may create it only with a filter
 * under `<prefix>.cmd.<host>.>`, so no worker reads another host's commands by sequence.
 */
export const commandReaderName = (host: string): string => `reader-${host}`;

/** What the worker of `host` needs, and nothing that lets it act for another host. */
export function workerPermissions(
  prefix: string,
  host: string,
  opts: PermissionOptions = {},
): NatsPermissions {
  const n = namesFor(prefix);
  const advisories = `${n.commandsStream}_ADVISORIES`;
  const kv = {
    vms: `KV_${n.vmsBucket}`,
    hosts: `KV_${n.hostsBucket}`,
    snaps: `KV_${n.snapshotsBucket}`,
    tombs: `KV_${n.tombstonesBucket}`,
    leases: `KV_${n.leasesBucket}`,
    cancels: `KV_${n.cancelsBucket}`,
    moves: `KV_${n.movesBucket}`,
  };
  const streams = [
    n.commandsStream,
    n.eventsStream,
    n.dlqStream,
    advisories,
    kv.vms,
    kv.hosts,
    kv.snaps,
    kv.tombs,
    kv.leases,
    kv.cancels,
    kv.moves,
  ];
  const images = `OBJ_${n.imagesBucket}`;
  const durable = n.durable(host);
  const dlqDurable = `dlq-${host}`;
  const reader = commandReaderName(host);
  return {
    publish: {
      allow: [
        // its own events, dead letters and console relay
        n.evtFilter(host),
        `${prefix}.dlq.${host}.>`,
        `${prefix}.console.${host}.>`,
        // its host record (and a standby's), snapshots, tombstones, view records and lease
        `$KV.${n.hostsBucket}.${host}`,
        `$KV.${n.hostsBucket}.${host}.standby.*`,
        `$KV.${n.snapshotsBucket}.${host}`,
        `$KV.${n.snapshotsBucket}.${host}.>`,
        `$KV.${n.tombstonesBucket}.${host}.>`,
        `$KV.${n.vmsBucket}.${host}.>`,
        `$KV.${n.leasesBucket}.${host}`,
        // JetStream API: look at the streams, (optionally) create the missing ones
        `${API}.INFO`,
        ...streams.map((s) => `${API}.STREAM.INFO.${s}`),
        ...(opts.provision === false ? [] : streams.map((s) => `${API}.STREAM.CREATE.${s}`)),
        // the commands' and dead letters' age and size limits follow the worker's flags
        ...(opts.provision === false
          ? []
          : [n.commandsStream, n.dlqStream].map((s) => `${API}.STREAM.UPDATE.${s}`)),
        // its command consumer: create/update with its own filter only, pull, ack
        `${API}.CONSUMER.INFO.${n.commandsStream}.${durable}`,
        `${API}.CONSUMER.CREATE.${n.commandsStream}.${durable}.${n.cmdFilter(host)}`,
        `${API}.CONSUMER.MSG.NEXT.${n.commandsStream}.${durable}`,
        `$JS.ACK.${n.commandsStream}.${durable}.>`,
        // the exhausted-deliveries mover: its advisories
        `${API}.CONSUMER.INFO.${advisories}.${dlqDurable}`,
        `${API}.CONSUMER.CREATE.${advisories}.${dlqDurable}.$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.${n.commandsStream}.${durable}`,
        `${API}.CONSUMER.MSG.NEXT.${advisories}.${dlqDurable}`,
        `$JS.ACK.${advisories}.${dlqDurable}.>`,
        // its own commands read back (order gate, mover) through its reader, filter-scoped;
        // never STREAM.MSG.GET or DIRECT.GET, whose sequence reads reach every host's commands
        `${API}.CONSUMER.CREATE.${n.commandsStream}.${reader}.${n.cmdFilter(host)}`,
        `${API}.CONSUMER.INFO.${n.commandsStream}.${reader}`,
        `${API}.CONSUMER.MSG.NEXT.${n.commandsStream}.${reader}`,
        `${API}.CONSUMER.DELETE.${n.commandsStream}.${reader}`,
        // replay of its own events and reads of one VM's history (ordered consumers)
        `${API}.CONSUMER.CREATE.${n.eventsStream}.*.${n.evtFilter(host)}`,
        `${API}.CONSUMER.INFO.${n.eventsStream}.*`,
        `${API}.CONSUMER.MSG.NEXT.${n.eventsStream}.*`,
        `${API}.CONSUMER.DELETE.${n.eventsStream}.*`,
        // the view (any host's: a prepare checks that no other host holds the vmId), its lease,
        // its snapshots
        `${API}.DIRECT.GET.${kv.vms}.$KV.${n.vmsBucket}.>`,
        // a move's record (keyed by vmId), read before starting a VM whose disk it exported
        `${API}.DIRECT.GET.${kv.moves}.$KV.${n.movesBucket}.>`,
        `${API}.DIRECT.GET.${kv.leases}.$KV.${n.leasesBucket}.${host}`,
        `${API}.DIRECT.GET.${kv.snaps}.$KV.${n.snapshotsBucket}.${host}`,
        `${API}.DIRECT.GET.${kv.snaps}.$KV.${n.snapshotsBucket}.${host}.>`,
        // compaction: its tombstones, and (opt-in) removing a compacted VM's events, by its
        // sequences or by a filtered purge, and its view record's purge marker: these requests
        // name what they remove in the body, so these rights are stream-wide (security.md)
        `${API}.DIRECT.GET.${kv.tombs}.$KV.${n.tombstonesBucket}.${host}.>`,
        ...(opts.compaction
          ? [
              `${API}.STREAM.PURGE.${n.eventsStream}`,
              `${API}.STREAM.MSG.DELETE.${n.eventsStream}`,
              // the purge markers its dropped view records leave (view-drop.ts)
              `${API}.STREAM.PURGE.${kv.vms}`,
            ]
          : []),
        // cancels of its own commands only (an ordered consumer filtered on its host's keys)
        `${API}.CONSUMER.CREATE.${kv.cancels}.*.$KV.${n.cancelsBucket}.${host}.>`,
        `${API}.CONSUMER.INFO.${kv.cancels}.*`,
        `${API}.CONSUMER.MSG.NEXT.${kv.cancels}.*`,
        `${API}.CONSUMER.DELETE.${kv.cancels}.*`,
        // images: read only (an object's metadata, then its chunks through a pull consumer
        // filtered on that object's chunks); creating the bucket is a provisioning right
        `${API}.STREAM.INFO.${images}`,
        ...(opts.provision === false ? [] : [`${API}.STREAM.CREATE.${images}`]),
        `${API}.STREAM.MSG.GET.${images}`,
        `${API}.CONSUMER.CREATE.${images}.*.$O.${n.imagesBucket}.C.*`,
        `${API}.CONSUMER.INFO.${images}.*`,
        `${API}.CONSUMER.MSG.NEXT.${images}.*`,
        `${API}.CONSUMER.DELETE.${images}.*`,
        // a move's disk export: chunks only, never an object's metadata, so it cannot make
        // or change what an image name resolves to (the move records the object; security.md)
        `$O.${n.imagesBucket}.C.*`,
      ],
    },
    subscribe: {
      allow: [`${workerInboxPrefix(host)}.>`, n.apiFilter(host), `${prefix}.console.${host}.>`],
    },
    allow_responses: true,
  };
}

/**
 * What a scheduler (the SDK's VmqClient, the vmq CLI's operator commands) needs: publish
 * commands to any host, read events, views and host records, ask the workers' queries. It never
 * appends events, writes views or dead letters, or touches consumers other than its own readers.
 */
export function schedulerPermissions(prefix: string): NatsPermissions {
  const n = namesFor(prefix);
  const kv = {
    vms: `KV_${n.vmsBucket}`,
    hosts: `KV_${n.hostsBucket}`,
    tombs: `KV_${n.tombstonesBucket}`,
  };
  const images = `OBJ_${n.imagesBucket}`;
  const moves = `KV_${n.movesBucket}`;
  return {
    publish: {
      allow: [
        `${prefix}.cmd.>`,
        `${prefix}.api.>`,
        // open is <host>.<vmId>.open; a session's subjects are <host>.<vmId>.<session>.*
        `${prefix}.console.*.*.open`,
        `${prefix}.console.*.*.*.in`,
        `${prefix}.console.*.*.*.ping`,
        `${prefix}.console.*.*.*.close`,
        `${API}.INFO`,
        `${API}.STREAM.INFO.${n.commandsStream}`,
        `${API}.STREAM.INFO.${n.eventsStream}`,
        `${API}.STREAM.INFO.${n.dlqStream}`,
        `${API}.STREAM.INFO.${kv.vms}`,
        `${API}.STREAM.INFO.${kv.hosts}`,
        `${API}.STREAM.MSG.GET.${n.eventsStream}`,
        `${API}.STREAM.MSG.GET.${n.dlqStream}`,
        `${API}.DIRECT.GET.${n.eventsStream}.>`,
        `${API}.DIRECT.GET.${n.eventsStream}`,
        `${API}.STREAM.MSG.GET.${kv.vms}`,
        `${API}.STREAM.MSG.GET.${kv.hosts}`,
        `${API}.DIRECT.GET.${kv.vms}.>`,
        `${API}.DIRECT.GET.${kv.hosts}.>`,
        // what is left of compacted VMs (vmq events on a VM whose events were purged)
        `${API}.STREAM.INFO.${kv.tombs}`,
        `${API}.DIRECT.GET.${kv.tombs}.>`,
        // cancels of queued commands (vmq cancel), whose host and VM are found by reading the
        // commands stream by sequence (a request: it cannot take a command from a worker)
        `$KV.${n.cancelsBucket}.*.*`,
        `${API}.STREAM.MSG.GET.${n.commandsStream}`,
        // ordered consumers to follow events, views and host records (never durable ones)
        ...[n.eventsStream, kv.vms, kv.hosts, n.dlqStream].flatMap((s) => [
          `${API}.CONSUMER.CREATE.${s}.*.>`,
          `${API}.CONSUMER.CREATE.${s}.*`,
          `${API}.CONSUMER.INFO.${s}.*`,
          `${API}.CONSUMER.MSG.NEXT.${s}.*`,
          `${API}.CONSUMER.DELETE.${s}.*`,
        ]),
        // images: push (chunks and metadata), list, inspect, tag, remove (a purge of one
        // object's subjects); the bucket itself is the workers' or an admin's to create
        `$O.${n.imagesBucket}.>`,
        `${API}.STREAM.INFO.${images}`,
        `${API}.STREAM.MSG.GET.${images}`,
        `${API}.STREAM.PURGE.${images}`,
        `${API}.CONSUMER.CREATE.${images}.*.>`,
        `${API}.CONSUMER.CREATE.${images}.*`,
        `${API}.CONSUMER.INFO.${images}.*`,
        `${API}.CONSUMER.DELETE.${images}.*`,
        `$JS.FC.${images}.>`,
        // moves (vmq move): their records, one per VM
        `$KV.${n.movesBucket}.>`,
        `${API}.STREAM.INFO.${moves}`,
        `${API}.STREAM.MSG.GET.${moves}`,
        `${API}.DIRECT.GET.${moves}.>`,
      ],
    },
    subscribe: {
      allow: ["_INBOX.>", `${prefix}.console.*.*.*.out`, `${prefix}.console.*.*.*.closed`],
    },
  };
}

/**
 * An operator: a scheduler that may also evacuate a dead host (`vmq evacuate`), which writes
 * another host's lease record (the fence) and purges that host's view records. Kept apart from
 * the scheduler set: a plain scheduler must not be able to fence a live host.
 */
export function operatorPermissions(prefix: string): NatsPermissions {
  const n = namesFor(prefix);
  const base = schedulerPermissions(prefix);
  const leases = `KV_${n.leasesBucket}`;
  return {
    publish: {
      allow: [
        ...base.publish.allow,
        `$KV.${n.leasesBucket}.>`,
        `$KV.${n.vmsBucket}.>`,
        `${API}.STREAM.INFO.${leases}`,
        `${API}.STREAM.MSG.GET.${leases}`,
        `${API}.DIRECT.GET.${leases}.>`,
      ],
    },
    subscribe: base.subscribe,
  };
}

/** The permissions as a nats-server configuration value (JSON is valid nats-server syntax). */
export function permissionsConfig(p: NatsPermissions): string {
  return JSON.stringify(p, null, 2);
}
