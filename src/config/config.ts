import { hostname } from "node:os";
import { z } from "zod";
import { BackendTag, HostId, Prefix } from "../contracts/index.js";
import { NoopConfig } from "../hypervisor/backends/noop/noop-config.js";
import { PropolisConfig } from "../hypervisor/backends/propolis/propolis-config.js";
import { QEMU_UNPREFIXED, QemuConfig } from "../hypervisor/backends/qemu/qemu-config.js";
import { flatSection, unflatSection } from "./sections.js";

const sanitizedHostname = (): string => {
  const h =
    hostname()
      .split(".")[0]
      ?.replace(/[^A-Za-z0-9_-]/g, "-")
      .replace(/^[-_]+/, "") ?? "";
  return h.slice(0, 64) || "host";
};

/** The worker itself: who it is, what it offers, how it consumes, when it snapshots. */
export const WorkerSection = z.object({
  host: HostId.default(sanitizedHostname).describe(
    "This worker's host id (default: the machine's hostname).",
  ),
  backends: z
    .array(BackendTag)
    .min(1)
    .default(["noop"])
    .describe("Backends this worker offers (comma-separated)."),
  defaultBackend: BackendTag.optional().describe(
    "Backend for a prepare whose spec names none (default: the first backend).",
  ),
  prefix: Prefix.default("vmq").describe(
    "Isolates subjects, streams and buckets (acme: acme.*, ACME_*, acme-*).",
  ),
  concurrency: z
    .int()
    .min(1)
    .max(1024)
    .default(16)
    .describe("Commands run at once (different VMs; one VM is always serial)."),
  dataDir: z
    .string()
    .min(1)
    .default(".vmq")
    .describe("Where VMs, the embedded NATS store and local state live."),
  imageCacheMaxMb: z
    .int()
    .min(0)
    .default(0)
    .describe(
      "Cap of the image cache (<data-dir>/images) in MiB; least recently used images no VM uses are evicted (0: no cap).",
    ),
  hostKeyFile: z
    .string()
    .min(1)
    .optional()
    .describe(
      "This host's curve seed for sealed cloud-init user-data (mode 0600). Default: <data-dir>/host.xk, created on first start.",
    ),
  labels: z
    .record(z.string(), z.string())
    .default({})
    .describe("Host labels for placement (key=value,...)."),
  ackWaitMs: z
    .int()
    .min(1000)
    .default(30_000)
    .describe("JetStream ack wait; long commands send working() heartbeats."),
  maxDeliver: z.int().min(2).default(10).describe("Deliveries before a command goes to the DLQ."),
  maxAckPending: z
    .int()
    .min(1)
    .default(2048)
    .describe("Commands buffered per host (queued behind busy VMs)."),
  maxAttempts: z
    .int()
    .min(1)
    .default(3)
    .describe(
      "Attempts of a transient backend failure per delivery; then the command goes back to the stream (nak with backoff) until its last delivery or its deadline records vm.command-failed.",
    ),
  heartbeatMs: z.int().min(100).default(5_000).describe("Host record heartbeat interval."),
  hostTtlMs: z
    .int()
    .min(1_000)
    .default(30_000)
    .describe("A host record expires this long after its last heartbeat."),
  leaseTtlMs: z
    .int()
    .min(1_000)
    .default(10_000)
    .describe(
      "The host lease: renewed every TTL/5; a worker that cannot renew for TTL/2 stops calling backends; a standby takes over after TTL without a renewal.",
    ),
  reconcileIntervalMs: z
    .int()
    .min(0)
    .default(60_000)
    .describe("Periodic state check of every VM (0: only at start)."),
  drainTimeoutMs: z
    .int()
    .min(0)
    .default(30_000)
    .describe("On SIGTERM, how long in-flight commands may finish."),
  retentionMs: z
    .int()
    .min(0)
    .default(86_400_000)
    .describe(
      "How long a destroyed VM keeps its events; then it is reduced to its tombstone and its events are purged (0: keep them for ever).",
    ),
  compactIntervalMs: z
    .int()
    .min(1_000)
    .default(60_000)
    .describe("How often destroyed VMs past --retention-ms are compacted."),
  commandsMaxAgeMs: z
    .int()
    .min(60_000)
    .default(7 * 24 * 3_600_000)
    .describe("How long the commands stream keeps commands (the audit trail)."),
  commandsMaxBytes: z
    .int()
    .min(-1)
    .default(1024 ** 3)
    .describe("Bytes the commands stream keeps at most, oldest dropped first (-1: no limit)."),
  dlqMaxAgeMs: z
    .int()
    .min(60_000)
    .default(30 * 24 * 3_600_000)
    .describe("How long the DLQ keeps dead letters."),
  dlqMaxBytes: z
    .int()
    .min(-1)
    .default(256 * 1024 ** 2)
    .describe("Bytes the DLQ keeps at most, oldest dropped first (-1: no limit)."),
  snapshots: z
    .enum(["on", "off"])
    .default("on")
    .describe(
      "Start from VM snapshots (replaying only newer events) and write them when idle and on drain.",
    ),
  snapshotIntervalMs: z
    .int()
    .min(1_000)
    .default(300_000)
    .describe("How often an idle worker snapshots changed VMs."),
  replicas: z.int().min(1).max(5).default(1).describe("Stream replicas (3 on a NATS cluster)."),
  http: z
    .string()
    .optional()
    .describe("Serve /metrics, /healthz and /readyz on [host]:port (off by default), e.g. :9464."),
  logLevel: z
    .enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"])
    .default("info")
    .describe("Log level."),
  logFormat: z
    .enum(["auto", "json", "pretty"])
    .default("auto")
    .describe(
      "Log format on stderr: auto (pretty one-liners on a terminal, JSON lines otherwise), json, or pretty.",
    ),
});

/** How it reaches NATS: a URL (or an embedded server), credentials, TLS. */
export const NatsSection = z.object({
  nats: z
    .string()
    .optional()
    .describe(
      "NATS server URL(s), comma-separated. Unset: start an embedded nats-server under the data dir.",
    ),
  embeddedPort: z
    .int()
    .min(0)
    .max(65535)
    .default(4222)
    .describe("Port of the embedded nats-server (0: any free port)."),
  natsWaitMs: z
    .int()
    .min(0)
    .optional()
    .describe(
      "How long a starting worker waits for an unreachable NATS, retrying with backoff (unset: for ever, as a daemon should; 0: not at all).",
    ),
  creds: z.string().optional().describe("NATS credentials file (JWT + nkey seed)."),
  nkeySeed: z.string().optional().describe("File holding an nkey seed."),
  user: z.string().optional().describe("NATS user."),
  password: z.string().optional().describe("NATS password."),
  token: z.string().optional().describe("NATS token."),
  tlsCa: z.string().optional().describe("CA certificate file for NATS TLS."),
  tlsCert: z.string().optional().describe("Client certificate file for NATS TLS."),
  tlsKey: z.string().optional().describe("Client key file for NATS TLS."),
});

export type NatsConfig = z.infer<typeof NatsSection>;

const noopFlat = flatSection("noop", NoopConfig);
const qemuFlat = flatSection("qemu", QemuConfig, QEMU_UNPREFIXED);
const propolisFlat = flatSection("propolis", PropolisConfig);

/**
 * Every option of `vmq worker` as one flat object: one flag and one environment variable each
 * (the CLI's flags, `--help` and docs/configuration.md come from this schema). The sections are
 * the worker's, NATS's, and one per backend, each backend's schema beside the backend
 * (src/hypervisor/backends/<name>/<name>-config.ts) with the backend's own defaults; a backend
 * option's flag is --<backend>-<option>.
 */
export const WorkerConfig = z.object({
  ...NatsSection.pick({ nats: true }).shape,
  ...WorkerSection.shape,
  ...NatsSection.omit({ nats: true }).shape,
  ...noopFlat.shape,
  ...qemuFlat.shape,
  ...propolisFlat.shape,
});
export type WorkerConfigInput = z.input<typeof WorkerConfig>;
type FlatConfig = z.infer<typeof WorkerConfig>;

/** The options once parsed, in their sections, every default applied. */
export interface ResolvedConfig extends z.infer<typeof WorkerSection> {
  /** How it reaches NATS (the URL is `connection.nats`). */
  connection: NatsConfig;
  noop: NoopConfig;
  qemu: QemuConfig;
  propolis: PropolisConfig;
}

export function resolveConfig(input: WorkerConfigInput): ResolvedConfig {
  const flat: FlatConfig = WorkerConfig.parse(input);
  const pick = <S extends z.ZodObject>(s: S): z.infer<S> =>
    Object.fromEntries(
      Object.keys(s.shape).flatMap((k) =>
        flat[k as keyof FlatConfig] === undefined ? [] : [[k, flat[k as keyof FlatConfig]]],
      ),
    ) as z.infer<S>;
  return {
    ...pick(WorkerSection),
    connection: pick(NatsSection),
    noop: unflatSection("noop", NoopConfig, flat),
    qemu: unflatSection("qemu", QemuConfig, flat, QEMU_UNPREFIXED),
    propolis: unflatSection("propolis", PropolisConfig, flat),
  };
}
