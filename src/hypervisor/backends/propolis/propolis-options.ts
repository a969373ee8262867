import type { StopHow } from "../../../contracts/index.js";
import { resolveOptions, type Resolved } from "../shared/options.js";
import type { CommandRunner, CommandRunnerOptions } from "./command-runner.js";
import { PROPOLIS_API_VERSION } from "./propolis-api.js";

export interface PropolisBackendOptions {
  /** A ready runner, or options to build one (binary paths, binDir, env, timeout). */
  runner?: CommandRunner;
  runnerOptions?: CommandRunnerOptions;
  /** Parent dataset of the VM disks: <vmsDataset>/<vmId>. Default rpool/vms. */
  vmsDataset?: string;
  /** Where a bare image name (spec.imagePath without "/") lives. Default rpool/images. */
  imagesDataset?: string;
  /** Snapshot cloned when spec.imagePath names no "@snap". Default latest. */
  imageSnapshot?: string;
  /** Zone paths are <zonesRoot>/<zone>. Default /zones. */
  zonesRoot?: string;
  /** Zone name = <zonePrefix><vmId> (hashed when too long). Default vmq-. */
  zonePrefix?: string;
  /** Zone brand whose boot runs propolis-server. Default nebula-vm. */
  zoneBrand?: string;
  /** Per-VM work dirs (cloud-init seed, zonecfg file): <workRoot>/<vmId>. Default /var/lib/vmq/propolis. */
  workRoot?: string;
  /** host:port of a VM's propolis-server; default: listenHost from basePort upward. */
  allocateAddress?: (vmId: string) => string | Promise<string>;
  /** Default 127.0.0.1. */
  listenHost?: string;
  /** Default 12400. */
  basePort?: number;
  /** Bootrom handed to propolis-server through a zone attribute. */
  bootromPath?: string;
  /** The pinned propolis-server API version. Default 5.0.0. */
  apiVersion?: string;
  /** How long a booted zone's server may take to answer. Default 30 s. */
  readyTimeoutMs?: number;
  /** How long Run may take to reach Running. Default 120 s. */
  startTimeoutMs?: number;
  /** How long a Stopped instance may take to be Destroyed before re-ensure. Default 15 s. */
  rundownTimeoutMs?: number;
  /** `how` of a completed API Stop. Default sigterm (see propolis-backend.ts). */
  orderlyStopHow?: StopHow;
  /** Label used for the metadata filler of the ensure request (e.g. the host id). */
  hostLabel?: string;
  /** Backoff of the state monitor after a failed poll: base, default 100 ms; cap, 5 s. */
  monitorBackoffBaseMs?: number;
  monitorBackoffCapMs?: number;
  /** Unexpected background errors (monitor); default: ignored. */
  onError?: (e: unknown, vmId: string) => void;
}

/** Every default of the Propolis backend. */
export const PROPOLIS_DEFAULTS = {
  vmsDataset: "rpool/vms",
  imagesDataset: "rpool/images",
  imageSnapshot: "latest",
  zonesRoot: "/zones",
  zonePrefix: "vmq-",
  zoneBrand: "nebula-vm",
  workRoot: "/var/lib/vmq/propolis",
  listenHost: "127.0.0.1",
  basePort: 12400,
  apiVersion: PROPOLIS_API_VERSION,
  readyTimeoutMs: 30_000,
  startTimeoutMs: 120_000,
  rundownTimeoutMs: 15_000,
  orderlyStopHow: "sigterm",
  monitorBackoffBaseMs: 100,
  monitorBackoffCapMs: 5_000,
} satisfies Partial<PropolisBackendOptions>;

export type PropolisOptions = Resolved<PropolisBackendOptions, typeof PROPOLIS_DEFAULTS>;

export const resolvePropolisOptions = (opts: PropolisBackendOptions): PropolisOptions =>
  resolveOptions(PROPOLIS_DEFAULTS, opts);
