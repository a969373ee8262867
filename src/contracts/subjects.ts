import type { QueryName } from "./queries.js";

/** Names of every stream, bucket and subject, derived from the prefix (default `vmq`). */
export interface Names {
  prefix: string;
  commandsStream: string;
  eventsStream: string;
  dlqStream: string;
  vmsBucket: string;
  hostsBucket: string;
  /** Snapshots of VM handles tied to a stream sequence (an addition to the v1 contract). */
  snapshotsBucket: string;
  /** What is left of destroyed VMs whose events were purged, `<host>.<vmId>` (an addition). */
  tombstonesBucket: string;
  /** One lease per host id: which worker of that host is active (an addition, view v2). */
  leasesBucket: string;
  /** Cancels of queued commands, `<host>.<hex commandId>` (an addition; cancels.ts). */
  cancelsBucket: string;
  /** The object store of VM base images (stream `OBJ_<prefix>-images`; an addition). */
  imagesBucket: string;
  /** Cold moves of VMs between hosts, keyed by vmId (an addition; moves.ts). */
  movesBucket: string;
  /** The key of a VM's record in the view: `<host>.<vmId>` (view v2; v1 keyed by vmId alone). */
  viewKey(host: string, vmId: string): string;
  cmd(host: string, vmId: string): string;
  cmdFilter(host: string): string;
  evt(host: string, vmId: string): string;
  evtFilter(host: string): string;
  dlq(host: string, vmId: string): string;
  api(host: string, vmId: string, query: QueryName): string;
  apiFilter(host: string): string;
  consoleSubject(host: string, vmId: string): string;
  durable(host: string): string;
}

export const DEFAULT_PREFIX = "vmq";
/** The DLQ token used when a message names no valid vmId. */
export const INVALID_VM_TOKEN = "_invalid";

export function names(prefix: string = DEFAULT_PREFIX): Names {
  const P = prefix.toUpperCase();
  return {
    prefix,
    commandsStream: `${P}_COMMANDS`,
    eventsStream: `${P}_EVENTS`,
    dlqStream: `${P}_DLQ`,
    vmsBucket: `${prefix}-vms`,
    hostsBucket: `${prefix}-hosts`,
    snapshotsBucket: `${prefix}-snapshots`,
    tombstonesBucket: `${prefix}-tombstones`,
    leasesBucket: `${prefix}-leases`,
    cancelsBucket: `${prefix}-cancels`,
    imagesBucket: `${prefix}-images`,
    movesBucket: `${prefix}-moves`,
    viewKey: (host, vmId) => `${host}.${vmId}`,
    cmd: (host, vmId) => `${prefix}.cmd.${host}.${vmId}`,
    cmdFilter: (host) => `${prefix}.cmd.${host}.>`,
    evt: (host, vmId) => `${prefix}.evt.${host}.${vmId}`,
    evtFilter: (host) => `${prefix}.evt.${host}.>`,
    dlq: (host, vmId) => `${prefix}.dlq.${host}.${vmId}`,
    api: (host, vmId, query) => `${prefix}.api.${host}.${vmId}.${query}`,
    apiFilter: (host) => `${prefix}.api.${host}.*.*`,
    consoleSubject: (host, vmId) => `${prefix}.console.${host}.${vmId}`,
    durable: (host) => `worker-${host}`,
  };
}

/** Splits `<prefix>.<kind>.<host>.<vmId>[.<rest>]`; undefined when it is not that shape. */
export function parseSubject(
  subject: string,
): { prefix: string; kind: string; host: string; vmId: string; rest: string[] } | undefined {
  const parts = subject.split(".");
  if (parts.length < 4) return undefined;
  const [prefix, kind, host, vmId, ...rest] = parts as [
    string,
    string,
    string,
    string,
    ...string[],
  ];
  return { prefix, kind, host, vmId, rest };
}

/**
 * Everything after `<prefix>.cmd.<host>.`: a subject with extra tokens (`...<vmId>.x`) is not
 * the VM's subject, so it fails the body's vmId check instead of running as that VM.
 */
export function commandVmToken(subject: string): string {
  // Everything after the third dot (once per command: indexOf, not split + join).
  let at = -1;
  for (let dots = 0; dots < 3; dots++) {
    at = subject.indexOf(".", at + 1);
    if (at < 0) return "";
  }
  return subject.slice(at + 1);
}

/**
 * Headers vmq writes on DLQ copies (the body is the raw command, byte for byte, unless the copy
 * would exceed the server's max_payload: then it is cut and the truncation headers say so).
 */
export const DLQ_HEADERS = {
  code: "Vmq-Dlq-Code",
  reason: "Vmq-Dlq-Reason",
  attempts: "Vmq-Dlq-Attempts",
  lastError: "Vmq-Dlq-Last-Error",
  subject: "Vmq-Dlq-Subject",
  streamSeq: "Vmq-Dlq-Stream-Seq",
  at: "Vmq-Dlq-At",
  vmState: "Vmq-Dlq-Vm-State",
  /** What was cut to fit max_payload: `payload`, `headers` or `payload,headers`; absent if nothing. */
  truncated: "Vmq-Dlq-Truncated",
  /** With a truncation: the original body's size in bytes and its SHA-256 (lowercase hex). */
  size: "Vmq-Dlq-Size",
  sha256: "Vmq-Dlq-Sha256",
  /** Set to `withheld` when plaintext user-data was replaced by its digest in the copy. */
  userData: "Vmq-Dlq-User-Data",
  /** The command's own NATS headers (Nats-Msg-Id, ...) are kept under this prefix. */
  originalPrefix: "Vmq-Dlq-Orig-",
} as const;
