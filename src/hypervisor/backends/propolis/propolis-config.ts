import { z } from "zod";
import { PROPOLIS_DEFAULTS } from "./propolis-options.js";

const dataset = z.string().regex(/^[A-Za-z0-9_.:-]+(\/[A-Za-z0-9_.:-]+)*$/, "a ZFS dataset name");
const path = z.string().regex(/^\/[^\0\n]*$/, "an absolute path");
const ms = (min: number, def: number) => z.int().min(min).max(3_600_000).default(def);

/**
 * What an operator sets of the Propolis backend (`vmq worker` flags --propolis-<option> and
 * environment). Defaults are PROPOLIS_DEFAULTS, the backend's own; the work root depends on
 * the data dir and is filled in by the worker.
 */
export const PropolisConfig = z.object({
  vmsDataset: dataset
    .default(PROPOLIS_DEFAULTS.vmsDataset)
    .describe("Propolis: ZFS dataset under which VM disks are cloned."),
  imagesDataset: dataset
    .default(PROPOLIS_DEFAULTS.imagesDataset)
    .describe("Propolis: ZFS dataset holding base images (<name>@<snapshot>)."),
  imageSnapshot: z
    .string()
    .regex(/^[A-Za-z0-9_.:-]+$/, "a ZFS snapshot name")
    .default(PROPOLIS_DEFAULTS.imageSnapshot)
    .describe("Propolis: snapshot cloned when an image names none."),
  zonesRoot: path.default(PROPOLIS_DEFAULTS.zonesRoot).describe("Propolis: zone paths' parent."),
  zonePrefix: z
    .string()
    .regex(/^[A-Za-z0-9_.-]{0,32}$/, "letters, digits, _ . -")
    .default(PROPOLIS_DEFAULTS.zonePrefix)
    .describe("Propolis: zone name prefix (zone = <prefix><vmId>)."),
  zoneBrand: z
    .string()
    .regex(/^[A-Za-z0-9_.-]+$/, "a zone brand")
    .default(PROPOLIS_DEFAULTS.zoneBrand)
    .describe("Propolis: brand of the zones whose boot runs propolis-server."),
  workRoot: path.optional().describe("Propolis: per-VM work dirs (default: <data-dir>/propolis)."),
  addressRange: z
    .string()
    .regex(/^\d{1,3}(\.\d{1,3}){3}(-\d{1,3}(\.\d{1,3}){3})?$/, "an IPv4 range first-last")
    .optional()
    .describe(
      "Propolis: IPv4 range (first-last) of the per-VM propolis-server addresses, one per zone on its control VNIC.",
    ),
  addressPrefix: z
    .int()
    .min(1)
    .max(32)
    .default(PROPOLIS_DEFAULTS.addressPrefix)
    .describe("Propolis: prefix length of the control addresses (zonecfg allowed-address)."),
  defaultRouter: z
    .string()
    .regex(/^\d{1,3}(\.\d{1,3}){3}$/, "an IPv4 address")
    .optional()
    .describe("Propolis: default router of the zones (zonecfg defrouter)."),
  controlLink: z
    .string()
    .regex(/^[A-Za-z][A-Za-z0-9_]{0,29}[0-9]$/, "an illumos link name")
    .optional()
    .describe("Propolis: etherstub or NIC over which each zone's control VNIC is created."),
  serverPort: z
    .int()
    .min(1)
    .max(65535)
    .default(PROPOLIS_DEFAULTS.serverPort)
    .describe("Propolis: port each zone's propolis-server listens on."),
  bootromPath: path
    .optional()
    .describe("Propolis: bootrom file (global zone); mounted read-only into each zone."),
  addrAttr: z
    .string()
    .regex(/^[A-Za-z0-9_.-]+$/, "a zone attribute name")
    .default(PROPOLIS_DEFAULTS.addrAttr)
    .describe("Propolis: zone attribute the brand reads the server's ip:port from."),
  bootromAttr: z
    .string()
    .regex(/^[A-Za-z0-9_.-]+$/, "a zone attribute name")
    .default(PROPOLIS_DEFAULTS.bootromAttr)
    .describe("Propolis: zone attribute the brand reads the bootrom path from."),
  binDir: path
    .optional()
    .describe(
      "Propolis: a directory holding zfs, zoneadm, zonecfg, zlogin, dladm, mkisofs (default: PATH).",
    ),
  commandTimeoutMs: ms(1_000, 60_000).describe("Propolis: timeout of each zone or ZFS command."),
  apiVersion: z
    .string()
    .regex(/^\d+\.\d+\.\d+$/, "a version x.y.z")
    .default(PROPOLIS_DEFAULTS.apiVersion)
    .describe("Propolis: the propolis-server API version asked for."),
  readyTimeoutMs: ms(1_000, PROPOLIS_DEFAULTS.readyTimeoutMs).describe(
    "Propolis: how long a booted zone's server may take to answer.",
  ),
  startTimeoutMs: ms(1_000, PROPOLIS_DEFAULTS.startTimeoutMs).describe(
    "Propolis: how long Run may take to reach Running.",
  ),
  rundownTimeoutMs: ms(1_000, PROPOLIS_DEFAULTS.rundownTimeoutMs).describe(
    "Propolis: how long a stopped instance may take to be destroyed.",
  ),
  monitorBackoffBaseMs: ms(10, PROPOLIS_DEFAULTS.monitorBackoffBaseMs).describe(
    "Propolis: first backoff of the state monitor after a failed poll.",
  ),
  monitorBackoffCapMs: ms(100, PROPOLIS_DEFAULTS.monitorBackoffCapMs).describe(
    "Propolis: longest backoff of the state monitor.",
  ),
});
export type PropolisConfig = z.infer<typeof PropolisConfig>;
