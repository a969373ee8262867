import { z } from "zod";
import { VmId, HostId, CommandId } from "./ids.js";
import { ImageDigest, ImageRef } from "./images.js";

export const BackendTag = z
  .enum(["qemu", "propolis", "noop"])
  .describe("Which hypervisor backend owns the VM.");
export type BackendTag = z.infer<typeof BackendTag>;

export const VmState = z
  .enum([
    "preparing",
    "prepared",
    "running",
    "suspended",
    "stopped",
    "failed",
    "destroyed",
    "unknown",
  ])
  .describe(
    "unknown: the backend cannot be reached or answers something we cannot map; never treated as dead.",
  );
export type VmState = z.infer<typeof VmState>;

/** A network interface or bridge name (Linux IFNAMSIZ is 16 with the NUL). */
const IfName = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,30}$/, "must be an interface name: letters, digits, _ . -");

export const NetworkConfig = z
  .discriminatedUnion("type", [
    z.object({ type: z.literal("user") }),
    z.object({ type: z.literal("tap"), bridge: IfName }),
    z.object({ type: z.literal("vnic"), name: IfName }),
    z.object({ type: z.literal("none") }),
  ])
  .describe("user (SLIRP, the default), tap on a bridge, vnic (illumos), or none.");
export type NetworkConfig = z.infer<typeof NetworkConfig>;

/** Text without control characters other than tab/newline. */
const noNul = (max: number) =>
  z
    .string()
    .max(max)
    // eslint-disable-next-line no-control-regex -- NUL is exactly what is refused
    .regex(/^[^\u0000]*$/, "must not contain NUL characters");

const Hostname = z
  .string()
  .regex(
    /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/,
    "must be a DNS hostname",
  )
  .max(253);

/** A curve25519 public key as nkeys writes it (`X` + 55 base32 characters). */
export const XKeyPublic = z.string().regex(/^X[A-Z2-7]{55}$/, "must be a curve public nkey (X...)");

/** 32 KiB of user-data sealed: 4-byte header, 24-byte nonce, 16-byte tag, in base64. */
const MAX_SEALED_CHARS = 4 * Math.ceil((32 * 1024 + 44) / 3);

export const SealedUserData = z
  .object({
    alg: z
      .literal("xkv1")
      .describe("nkeys xkey v1: curve25519 + xsalsa20-poly1305 (NaCl box), header xkv1."),
    recipient: XKeyPublic.describe("The target host's public key (its host record's userDataKey)."),
    sender: XKeyPublic.describe("The sealer's one-off public key, needed to open it."),
    data: z
      .string()
      .min(1)
      .max(MAX_SEALED_CHARS)
      .regex(/^[A-Za-z0-9+/]+={0,2}$/, "must be base64")
      .describe("The sealed bytes (header, nonce, box) in base64."),
  })
  .describe("cloud-init user-data sealed to one host: only that host's worker can open it.");
export type SealedUserData = z.infer<typeof SealedUserData>;

export const CloudInit = z
  .object({
    userData: noNul(32 * 1024)
      .optional()
      .describe(
        'Plaintext cloud-init user-data (old clients; never copied into events, which hold "" here beside sealedUserData or userDataDigest, for older readers). Prefer sealedUserData.',
      ),
    sealedUserData: SealedUserData.optional(),
    userDataDigest: z
      .string()
      .regex(/^sha256:[0-9a-f]{64}$/, "must be sha256:<64 hex>")
      .optional()
      .describe(
        "Events, DLQ copies: stands for plaintext userData, which is never copied. Not accepted alone in a command.",
      ),
    userDataBytes: z
      .int()
      .min(0)
      .max(32 * 1024)
      .optional()
      .describe("The plaintext userData's size in bytes, next to userDataDigest."),
    instanceId: z
      .string()
      .regex(/^[A-Za-z0-9_.-]{1,128}$/, "must be 1-128 of A-Z a-z 0-9 _ . -")
      .optional(),
    hostname: Hostname.optional(),
  })
  // One form of the user-data. `userData: ""` may stand beside the sealed form or the digest:
  // events carry it so that readers of the previous v1, which required userData, still parse.
  .refine(
    (c) =>
      [c.userData || undefined, c.sealedUserData, c.userDataDigest].filter((x) => x !== undefined)
        .length === (c.userData === "" && !c.sealedUserData && !c.userDataDigest ? 0 : 1),
    { message: "give exactly one of userData, sealedUserData (or, in events, userDataDigest)" },
  );
export type CloudInit = z.infer<typeof CloudInit>;

export const SshConfig = z.object({
  user: z.string().regex(/^[a-z_][a-z0-9_-]{0,31}$/, "must be a POSIX user name"),
  publicKey: z
    .string()
    .max(16 * 1024)
    .regex(
      /^(ssh|ecdsa|sk)-[A-Za-z0-9@.-]+ [A-Za-z0-9+/=]+( [^\n\r]*)?$/,
      "must be one OpenSSH public key line",
    ),
});
export type SshConfig = z.infer<typeof SshConfig>;

export const VmSpec = z
  .object({
    name: noNul(128).min(1).describe("Human name of the VM."),
    backend: BackendTag.optional().describe("Default: the worker's default backend."),
    imagePath: noNul(4096)
      .min(1)
      // A regex, not a refine, so the published JSON Schema carries the rule as a pattern.
      .regex(/^(?!(?:.*[\\/])?\.\.(?:[\\/]|$))/, "must not contain .. path segments")
      .optional()
      .describe("Base image; resolved inside the worker's image roots. Give this or image."),
    image: ImageRef.optional().describe(
      "Base image from the object store (name:tag or name@sha256:<hex>); the worker fetches it into its image cache. Give this or imagePath.",
    ),
    vcpus: z.int().min(1).max(64),
    memoryMb: z.int().min(64).max(1048576),
    diskGb: z.int().min(1).max(65536).optional(),
    network: NetworkConfig.default({ type: "user" }),
    cloudInit: CloudInit.optional(),
    ssh: SshConfig.optional(),
    uefi: z.boolean().default(false),
  })
  .refine((s) => (s.imagePath === undefined) !== (s.image === undefined), {
    message: "give exactly one of imagePath and image",
    path: ["imagePath"],
  })
  .describe("What to prepare (camelCase of the seed's VmSpec).");
export type VmSpec = z.infer<typeof VmSpec>;
export type VmSpecInput = z.input<typeof VmSpec>;

/**
 * What a backend returns and persists for a VM. Fields that later versions add must have
 * defaults (or be optional) so old records still parse, as the Rust crate's serde defaults did.
 */
export const VmHandle = z
  .object({
    id: VmId,
    name: z.string(),
    backend: BackendTag,
    workDir: z.string(),
    overlayPath: z.string().optional(),
    seedIsoPath: z.string().optional(),
    pid: z.int().positive().optional(),
    qmpSocket: z.string().optional(),
    consoleSocket: z.string().optional(),
    vncAddr: z.string().optional(),
    vcpus: z.int().min(1).default(1),
    memoryMb: z.int().min(1).default(1024),
    diskGb: z.int().optional(),
    network: NetworkConfig.default({ type: "user" }),
    sshHostPort: z.int().min(1).max(65535).optional(),
    macAddr: z
      .string()
      .regex(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/)
      .optional(),
    uefi: z.boolean().default(false),
    accelerator: z
      .enum(["kvm", "tcg"])
      .optional()
      .describe("QEMU: which accelerator runs the guest."),
    propolisAddr: z
      .string()
      .optional()
      .describe("Propolis: host:port of this VM's propolis-server."),
    zoneName: z.string().optional().describe("Propolis: the VM's zone."),
    imageDigest: ImageDigest.optional().describe(
      "The object-store image (spec.image) the VM was prepared from, as fetched and verified.",
    ),
  })
  .describe("A VM's runtime handle, persisted in events and the view.");
export type VmHandle = z.infer<typeof VmHandle>;

export const Pending = z
  .object({
    commandId: CommandId,
    type: z.string(),
    since: z.iso.datetime({ offset: true }),
    deadline: z.iso.datetime({ offset: true }),
  })
  .describe("The command in flight for a VM; a transitional situation always has a deadline.");
export type Pending = z.infer<typeof Pending>;

export const ConsoleEndpoint = z.discriminatedUnion("type", [
  z.object({ type: z.literal("unix-socket"), path: z.string() }),
  z.object({ type: z.literal("websocket"), url: z.string() }),
  z.object({ type: z.literal("none") }),
]);
export type ConsoleEndpoint = z.infer<typeof ConsoleEndpoint>;

export const Capabilities = z.object({
  suspend: z.boolean().describe("suspend/resume supported"),
  reboot: z.boolean().default(false),
  uefi: z.boolean().default(false),
  guestIp: z.boolean().default(true),
  console: z.enum(["unix-socket", "websocket", "none"]),
  observesChanges: z
    .boolean()
    .default(false)
    .describe("pushes or polls state changes no command explains"),
});
export type Capabilities = z.infer<typeof Capabilities>;

/** The `vmq-vms` view: the VmHandle plus state, host and lastEventSeq. */
export const VmView = z.object({
  vmId: VmId,
  host: HostId,
  state: VmState,
  lastEventSeq: z.int().min(0),
  /**
   * The VM's own version: how many events its subject holds (1, 2, 3...), where lastEventSeq is
   * the stream-wide sequence. Added in 0.1 (additive): records written before it lack it.
   */
  eventCount: z.int().min(0).optional(),
  handle: VmHandle.nullable(),
  pending: Pending.nullable().default(null),
  updatedAt: z.iso.datetime({ offset: true }),
});
export type VmView = z.infer<typeof VmView>;
