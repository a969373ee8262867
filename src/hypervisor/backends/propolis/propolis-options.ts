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
  /**
   * ip:port of a VM's propolis-server, chosen by the caller; the zone then gets no control
   * VNIC from vmq (the caller's address must be reachable on its own). Default: addressRange.
   */
  allocateAddress?: (vmId: string) => string | Promise<string>;
  /** IPv4 "first-last": one address per VM, on its zone's control VNIC (docs/propolis.md). */
  addressRange?: string;
  /** Prefix length of the control addresses (zonecfg allowed-address). Default 24. */
  addressPrefix?: number;
  /** Default router of the zones (zonecfg defrouter); none by default. */
  defaultRouter?: string;
  /** Link (etherstub or NIC) over which each zone's control VNIC is created. */
  controlLink?: string;
  /** Port every propolis-server listens on (each zone has its own IP). Default 12400. */
  serverPort?: number;
  /** Bootrom (global-zone path); its directory is mounted read-only at /vmq-rom in the zone. */
  bootromPath?: string;
  /** Zone attribute the brand reads the server's ip:port from. Default vmq-propolis-addr. */
  addrAttr?: string;
  /** Zone attribute the brand reads the bootrom path (as seen in the zone) from. Default vmq-bootrom. */
  bootromAttr?: string;
  /** The pinned propolis-server API version. Default 5.0.0. */
  apiVersion?: string;
  /** How long a booted zone's server may take to answer. Default 30 s. */
  readyTimeoutMs?: number;
  /** How long Run may take to reach Running. Default 120 s. */
  startTimeoutMs?: number;
  /** How long a Stopped instance may take to be Destroyed before re-ensure. Default 15 s. */
  rundownTimeoutMs?: number;
  /** `how` of a completed API Stop: a hard halt of the VMM, so forced (see propolis-backend.ts). */
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
  addressPrefix: 24,
  serverPort: 12400,
  addrAttr: "vmq-propolis-addr",
  bootromAttr: "vmq-bootrom",
  apiVersion: PROPOLIS_API_VERSION,
  readyTimeoutMs: 30_000,
  startTimeoutMs: 120_000,
  rundownTimeoutMs: 15_000,
  orderlyStopHow: "forced",
  monitorBackoffBaseMs: 100,
  monitorBackoffCapMs: 5_000,
} satisfies Partial<PropolisBackendOptions>;

export type PropolisOptions = Resolved<PropolisBackendOptions, typeof PROPOLIS_DEFAULTS>;

export const resolvePropolisOptions = (opts: PropolisBackendOptions): PropolisOptions =>
  resolveOptions(PROPOLIS_DEFAULTS, opts);
