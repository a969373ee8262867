import { hostname } from "node:os";
import { z } from "zod";
import { BackendTag, HostId, Prefix } from "../contracts/index.js";

const sanitizedHostname = (): string => {
  const h =
    hostname()
      .split(".")[0]
      ?.replace(/[^A-Za-z0-9_-]/g, "-")
      .replace(/^[-_]+/, "") ?? "";
  return h.slice(0, 64) || "host";
};

/**
 * Every worker option with its default and help text, parsed once into a ResolvedConfig. The
 * CLI's flags and environment variables, and docs/configuration.md, come from this schema.
 */
export const WorkerConfig = z.object({
  nats: z
    .string()
    .optional()
    .describe(
      "NATS server URL(s), comma-separated. Unset: start an embedded nats-server under the data dir.",
    ),
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
  embeddedPort: z
    .int()
    .min(0)
    .max(65535)
    .default(4222)
    .describe("Port of the embedded nats-server (0: any free port)."),
  noopLatencyMs: z.int().min(0).default(0).describe("Noop backend: latency of every call."),
  noopStateDir: z
    .string()
    .optional()
    .describe("Noop backend: keep VMs in files here so they outlive the worker process."),
  imageRoots: z
    .array(z.string())
    .optional()
    .describe("QEMU: directories base images must resolve inside (default: <data-dir>/images)."),
  accelerator: z
    .enum(["auto", "kvm", "tcg"])
    .default("auto")
    .describe(
      "QEMU: KVM when /dev/kvm opens and the CPU has VMX/SVM (a nested kvm-pvm is not used), else TCG; or force one.",
    ),
  cpuModel: z
    .string()
    .optional()
    .describe("QEMU: CPU model (default: max under TCG, kvm64 under KVM; never host)."),
  vnc: z.enum(["on", "off"]).default("off").describe("QEMU: VNC display on 127.0.0.1 per VM."),
  propolisVmsDataset: z
    .string()
    .default("rpool/vms")
    .describe("Propolis: ZFS dataset under which VM disks are cloned."),
  propolisImagesDataset: z
    .string()
    .default("rpool/images")
    .describe("Propolis: ZFS dataset holding base images (<name>@latest)."),
  propolisBasePort: z
    .int()
    .min(1)
    .max(65535)
    .default(12400)
    .describe("Propolis: first port of the per-VM propolis-server addresses."),
  creds: z.string().optional().describe("NATS credentials file (JWT + nkey seed)."),
  nkeySeed: z.string().optional().describe("File holding an nkey seed."),
  user: z.string().optional().describe("NATS user."),
  password: z.string().optional().describe("NATS password."),
  token: z.string().optional().describe("NATS token."),
  tlsCa: z.string().optional().describe("CA certificate file for NATS TLS."),
  tlsCert: z.string().optional().describe("Client certificate file for NATS TLS."),
  tlsKey: z.string().optional().describe("Client key file for NATS TLS."),
});
export type WorkerConfigInput = z.input<typeof WorkerConfig>;
export type ResolvedConfig = z.infer<typeof WorkerConfig>;

export function resolveConfig(input: WorkerConfigInput): ResolvedConfig {
  return WorkerConfig.parse(input);
}
