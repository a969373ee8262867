/**
 * The illumos side of a VM: its zone (whose brand's boot runs one propolis-server), the ZFS
 * clone of its image (grown to diskGb), its work dir (cloud-init seed, zonecfg file), its
 * control VNIC and the server's address on it, and the zone attributes the brand reads
 * (docs/propolis.md). prepare checks every step and undoes the completed ones, in reverse,
 * when one fails; teardown removes whatever of it exists.
 */
import { mkdir, rm, stat, writeFile } from "node:fs/promises";
import { isIPv4 } from "node:net";
import { basename, dirname, isAbsolute, join } from "node:path";
import { ID_PATTERN } from "../../../contracts/ids.js";
import type { VmHandle, VmSpec } from "../../../contracts/index.js";
import { isVmqError, VmqError } from "../../../lib/errors.js";
import { checkAborted, HypervisorError, localImagePath } from "../../errors.js";
import { plainUserData } from "../shared/user-data.js";
import type { CommandRunner } from "./command-runner.js";
import {
  checkDataset,
  checkSafeValue,
  checkSnapshot,
  checkZoneName,
  datasetExists,
  zonecfgScript,
  zoneState,
  type ZoneNet,
  type ZoneState,
} from "./illumos.js";
import { parseAddr } from "./propolis-client.js";
import type { PropolisOptions } from "./propolis-options.js";
import {
  checkLinkName,
  controlVnicName,
  freeAddress,
  parseRange,
  type AddressRange,
} from "./zone-network.js";

const invalid = (msg: string) => new HypervisorError("hypervisor::invalid-state", msg);
const notConfigured = (msg: string) => new HypervisorError("propolis::not-configured", msg);
const sig = (signal: AbortSignal | undefined) => (signal ? { signal } : {});
type RunOpts = { signal?: AbortSignal };

/** Where the bootrom's directory is mounted (read-only) inside every zone. */
export const ROM_DIR = "/vmq-rom";

export class ZoneProvisioner {
  readonly #o: PropolisOptions;
  readonly #runner: CommandRunner;
  /** Control IPs held by known VMs (range allocation). */
  readonly #usedIps = new Set<string>();
  readonly #range: AddressRange | undefined;

  constructor(o: PropolisOptions, runner: CommandRunner) {
    this.#o = o;
    this.#runner = runner;
    checkDataset(o.vmsDataset, "VM parent dataset");
    checkDataset(o.imagesDataset, "image dataset");
    checkSafeValue(o.zonesRoot, "zonesRoot");
    checkSafeValue(o.workRoot, "workRoot");
    checkSafeValue(o.addrAttr, "addrAttr");
    checkSafeValue(o.bootromAttr, "bootromAttr");
    this.#range = o.addressRange === undefined ? undefined : parseRange(o.addressRange);
    if (o.controlLink !== undefined) checkLinkName(o.controlLink, "control link");
    if (o.defaultRouter !== undefined && !isIPv4(o.defaultRouter)) {
      throw notConfigured(
        `default router ${JSON.stringify(o.defaultRouter)} is not an IPv4 address`,
      );
    }
    if (!Number.isInteger(o.addressPrefix) || o.addressPrefix < 1 || o.addressPrefix > 32) {
      throw notConfigured(`address prefix ${o.addressPrefix} is not 1-32`);
    }
    if (this.#range !== undefined && o.controlLink === undefined) {
      throw notConfigured("an address range needs a control link (--propolis-control-link)");
    }
  }

  zoneName(vmId: string): string {
    if (!ID_PATTERN.test(vmId)) {
      throw new HypervisorError("hypervisor::invalid-path", `bad vmId ${JSON.stringify(vmId)}`);
    }
    const prefix = this.#o.zonePrefix;
    const name = `${prefix}${vmId}`;
    if (name.length <= 63) return checkZoneName(name);
    // Too long for a zone name: keep it unique with a hash of the full id.
    const h = [...vmId].reduce((a, c) => (a * 33 + c.charCodeAt(0)) >>> 0, 5381).toString(16);
    return checkZoneName(`${prefix}${vmId.slice(0, 63 - prefix.length - h.length - 1)}-${h}`);
  }

  /** The VM's disk: a clone of its image under vmsDataset. */
  dataset(vmId: string): string {
    return `${this.#o.vmsDataset}/${vmId}`;
  }

  zoneState(vmId: string, signal?: AbortSignal): Promise<ZoneState> {
    return zoneState(this.#runner, this.zoneName(vmId), sig(signal));
  }

  /** Creates the zone, its disk and its work dir; returns the VM's handle. */
  async provision(vmId: string, spec: VmSpec, signal?: AbortSignal): Promise<VmHandle> {
    const zone = this.zoneName(vmId);
    const guestVnic = vnicOf(spec);
    const image = this.#imageSnapshot(localImagePath(spec));
    const dataset = this.dataset(vmId);
    const workDir = this.#workDir(vmId);
    const zonepath = `${this.#o.zonesRoot}/${zone}`;
    const run = sig(signal);
    const bootrom = await this.#bootrom();

    // Never adopt or "continue" over leftovers: they belong to someone else or to a failed run.
    if ((await zoneState(this.#runner, zone, run)) !== "absent") {
      throw invalid(`zone ${zone} already exists; destroy ${vmId} first`);
    }
    if (await datasetExists(this.#runner, dataset, run)) {
      throw invalid(`dataset ${dataset} already exists; destroy ${vmId} first`);
    }
    const volsize =
      spec.diskGb === undefined ? undefined : await this.#checkDiskSize(image, spec.diskGb, run);
    const { addr, ctl } = await this.#allocate(vmId, zone);

    const undo: { what: string; run: () => Promise<unknown> }[] = [];
    let step = "work dir";
    try {
      await mkdir(this.#o.workRoot, { recursive: true });
      await mkdir(workDir, { mode: 0o700 });
      undo.push({
        what: `work dir ${workDir}`,
        run: () => rm(workDir, { recursive: true, force: true }),
      });

      step = "zfs clone";
      checkAborted(signal, `prepare of ${vmId}`);
      await this.#runner.run("zfs", ["clone", image, dataset], run);
      undo.push({
        what: `dataset ${dataset}`,
        run: () => this.#runner.run("zfs", ["destroy", "-r", dataset]),
      });
      if (volsize !== undefined) {
        step = "disk size";
        await this.#runner.run("zfs", ["set", `volsize=${volsize}`, dataset], run);
      }

      let seedIsoPath: string | undefined;
      if (spec.cloudInit !== undefined || spec.ssh !== undefined) {
        step = "cloud-init seed";
        checkAborted(signal, `prepare of ${vmId}`);
        seedIsoPath = await this.#writeSeed(vmId, spec, workDir, signal);
      }

      const nets: ZoneNet[] = [];
      if (ctl !== undefined) {
        step = "control vnic";
        checkAborted(signal, `prepare of ${vmId}`);
        await this.#runner.run("dladm", ["create-vnic", "-l", ctl.link, ctl.vnic], run);
        undo.push({
          what: `vnic ${ctl.vnic}`,
          run: () => this.#runner.run("dladm", ["delete-vnic", ctl.vnic]),
        });
        nets.push({
          physical: ctl.vnic,
          allowedAddress: `${parseAddr(addr).host}/${this.#o.addressPrefix}`,
          ...(this.#o.defaultRouter === undefined ? {} : { defrouter: this.#o.defaultRouter }),
        });
      }
      if (guestVnic !== undefined) nets.push({ physical: guestVnic });

      step = "zonecfg";
      checkAborted(signal, `prepare of ${vmId}`);
      const cfgFile = join(workDir, "zonecfg.cmd");
      const mounts = [{ dir: ROM_DIR, special: dirname(bootrom) }];
      if (seedIsoPath !== undefined) mounts.push({ dir: "/vmq", special: workDir });
      await writeFile(
        cfgFile,
        zonecfgScript({
          brand: this.#o.zoneBrand,
          zonepath,
          nets,
          devices: [`/dev/zvol/rdsk/${dataset}`],
          mounts,
          attrs: {
            [this.#o.addrAttr]: addr,
            [this.#o.bootromAttr]: `${ROM_DIR}/${basename(bootrom)}`,
            "vmq-vm-id": vmId,
          },
        }),
        { mode: 0o600 },
      );
      await this.#runner.run("zonecfg", ["-z", zone, "-f", cfgFile], run);
      undo.push({
        what: `zone ${zone} (configured)`,
        run: () => this.#runner.run("zonecfg", ["-z", zone, "delete", "-F"]),
      });

      step = "zone install";
      checkAborted(signal, `prepare of ${vmId}`);
      await this.#runner.run("zoneadm", ["-z", zone, "install"], run);
      undo.push({
        what: `zone ${zone} (installed)`,
        run: () => this.#runner.run("zoneadm", ["-z", zone, "uninstall", "-F"]),
      });
      checkAborted(signal, `prepare of ${vmId}`);

      return {
        id: vmId,
        name: spec.name,
        backend: "propolis",
        workDir,
        overlayPath: `/dev/zvol/rdsk/${dataset}`,
        ...(seedIsoPath === undefined ? {} : { seedIsoPath }),
        vcpus: spec.vcpus,
        memoryMb: spec.memoryMb,
        ...(spec.diskGb === undefined ? {} : { diskGb: spec.diskGb }),
        network: spec.network,
        uefi: spec.uefi,
        propolisAddr: addr,
        zoneName: zone,
      };
    } catch (e) {
      const left = await compensate(undo);
      this.releaseAddress(addr);
      throw prepareError(e, vmId, step, left);
    }
  }

  /** Removes the (halted) zone, the disk and the work dir; what is already gone is fine. */
  async teardown(vm: VmHandle, zs: ZoneState, signal?: AbortSignal): Promise<void> {
    const zone = this.zoneName(vm.id);
    if (zs !== "absent" && zs !== "configured") {
      await this.#runner.run("zoneadm", ["-z", zone, "uninstall", "-F"], sig(signal));
    }
    if (zs !== "absent")
      await this.#runner.run("zonecfg", ["-z", zone, "delete", "-F"], sig(signal));
    const dataset = this.dataset(vm.id);
    const z = await this.#runner.run("zfs", ["destroy", "-r", dataset], {
      ...sig(signal),
      allowFailure: true,
    });
    if (z.exitCode !== 0 && !/does not exist/i.test(z.stderr)) {
      throw new HypervisorError(
        "image::zfs-failed",
        `zfs destroy -r ${dataset} failed: ${z.stderr.trim()}`,
        { details: { stderr: z.stderr, exitCode: z.exitCode } },
      );
    }
    if (this.#range !== undefined) await this.#deleteControlVnic(vm.id, signal);
    await rm(this.#workDir(vm.id), { recursive: true, force: true });
    if (vm.propolisAddr !== undefined) this.releaseAddress(vm.propolisAddr);
  }

  /** Halts the zone: the propolis-server process dies with it. */
  async haltZone(vmId: string, signal?: AbortSignal): Promise<void> {
    await this.#runner.run("zoneadm", ["-z", this.zoneName(vmId), "halt"], sig(signal));
  }

  async bootZone(vmId: string, signal?: AbortSignal): Promise<void> {
    await this.#runner.run("zoneadm", ["-z", this.zoneName(vmId), "boot"], sig(signal));
  }

  /** Marks a server address in use (a VM found again after a restart holds its address). */
  claimAddress(addr: string): void {
    this.#usedIps.add(parseAddr(addr).host);
  }

  releaseAddress(addr: string): void {
    try {
      this.#usedIps.delete(parseAddr(addr).host);
    } catch {
      // an address we never parsed was never reserved
    }
  }

  /** The MAC of a VM's guest VNIC (global zone), which the guest's NIC carries. */
  async guestMac(vnic: string, signal?: AbortSignal): Promise<string> {
    const r = await this.#runner.run(
      "dladm",
      ["show-vnic", "-p", "-o", "macaddress", checkSafeValue(vnic, "vnic")],
      sig(signal),
    );
    return r.stdout.trim().replace(/\\:/g, ":");
  }

  /** The zone's own control IP (excluded from guest addresses). */
  controlIp(vm: VmHandle): string | undefined {
    return vm.propolisAddr === undefined ? undefined : parseAddr(vm.propolisAddr).host;
  }

  #workDir(vmId: string): string {
    return join(this.#o.workRoot, vmId);
  }

  #imageSnapshot(imagePath: string): string {
    const withDataset = imagePath.includes("/")
      ? imagePath
      : `${this.#o.imagesDataset}/${imagePath}`;
    const full = withDataset.includes("@")
      ? withDataset
      : `${withDataset}@${this.#o.imageSnapshot}`;
    return checkSnapshot(full);
  }

  /** The configured bootrom, which must exist: the brand hands it to propolis-server. */
  async #bootrom(): Promise<string> {
    const b = this.#o.bootromPath;
    if (b === undefined) {
      throw notConfigured("no bootrom is configured (--propolis-bootrom-path)");
    }
    if (!isAbsolute(b)) throw notConfigured(`bootrom ${b} is not an absolute path`);
    checkSafeValue(b, "bootrom path");
    const st = await stat(b).catch(() => undefined);
    if (!st?.isFile()) throw notConfigured(`bootrom ${b} is not a file`);
    return b;
  }

  /** ZFS volumes only grow: diskGb below the image's size is refused before anything is made. */
  async #checkDiskSize(image: string, diskGb: number, run: RunOpts): Promise<number> {
    const want = diskGb * 2 ** 30;
    const r = await this.#runner.run("zfs", ["get", "-Hp", "-o", "value", "volsize", image], run);
    const have = Number(r.stdout.trim());
    if (!Number.isSafeInteger(have) || have <= 0) {
      throw new HypervisorError(
        "image::zfs-failed",
        `${image} is not a ZFS volume (volsize ${r.stdout.trim()})`,
      );
    }
    if (want < have) {
      throw new HypervisorError(
        "image::disk-too-small",
        `diskGb ${diskGb} is smaller than image ${image} (${(have / 2 ** 30).toFixed(2)} GiB)`,
        { details: { diskGb, imageBytes: have } },
      );
    }
    return want;
  }

  async #allocate(
    vmId: string,
    zone: string,
  ): Promise<{ addr: string; ctl?: { link: string; vnic: string } }> {
    if (this.#o.allocateAddress) {
      const addr = await this.#o.allocateAddress(vmId);
      parseAddr(addr);
      checkSafeValue(addr, "propolis address");
      return { addr };
    }
    const link = this.#o.controlLink;
    if (this.#range === undefined || link === undefined) {
      throw notConfigured(
        "no address range is configured for the zones' propolis-servers (--propolis-address-range, --propolis-control-link)",
      );
    }
    const ip = freeAddress(this.#range, this.#usedIps);
    if (ip === undefined) {
      throw new HypervisorError(
        "propolis::no-free-address",
        `every address of ${this.#o.addressRange ?? ""} is held by a VM`,
      );
    }
    this.#usedIps.add(ip);
    return { addr: `${ip}:${this.#o.serverPort}`, ctl: { link, vnic: controlVnicName(zone) } };
  }

  async #deleteControlVnic(vmId: string, signal?: AbortSignal): Promise<void> {
    const vnic = controlVnicName(this.zoneName(vmId));
    const r = await this.#runner.run("dladm", ["delete-vnic", vnic], {
      ...sig(signal),
      allowFailure: true,
    });
    if (r.exitCode !== 0 && !/not found|does not exist|invalid link/i.test(r.stderr)) {
      throw new HypervisorError(
        "zone::command-failed",
        `dladm delete-vnic ${vnic} failed: ${r.stderr.trim()}`,
        { details: { stderr: r.stderr, exitCode: r.exitCode } },
      );
    }
  }

  async #writeSeed(vmId: string, spec: VmSpec, workDir: string, signal?: AbortSignal) {
    const ci = spec.cloudInit;
    const userData = ci
      ? plainUserData(ci)
      : spec.ssh
        ? `#cloud-config\nusers:\n  - name: ${spec.ssh.user}\n    ssh_authorized_keys:\n      - ${JSON.stringify(spec.ssh.publicKey)}\n`
        : "#cloud-config\n";
    const metaData = `instance-id: ${ci?.instanceId ?? vmId}\nlocal-hostname: ${ci?.hostname ?? vmId}\n`;
    const ud = join(workDir, "user-data");
    const md = join(workDir, "meta-data");
    await writeFile(ud, userData, { mode: 0o600 });
    await writeFile(md, metaData, { mode: 0o600 });
    const iso = join(workDir, "seed.iso");
    await this.#runner.run(
      "mkisofs",
      ["-output", iso, "-volid", "cidata", "-joliet", "-rock", ud, md],
      sig(signal),
    );
    // propolis-server sees the work dir through the read-only lofs mount at /vmq.
    return "/vmq/seed.iso";
  }
}

function vnicOf(spec: VmSpec): string | undefined {
  switch (spec.network.type) {
    case "none":
      return undefined;
    case "vnic":
      return checkSafeValue(spec.network.name, "vnic");
    default:
      throw new HypervisorError(
        "hypervisor::unsupported",
        `propolis VMs take network "vnic" or "none", not "${spec.network.type}"`,
      );
  }
}

/** Runs the undo steps in reverse; returns what could not be removed. */
async function compensate(
  undo: { what: string; run: () => Promise<unknown> }[],
): Promise<string[]> {
  const left: string[] = [];
  for (const u of [...undo].reverse()) {
    try {
      await u.run();
    } catch (e) {
      left.push(`${u.what}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  return left;
}

function prepareError(e: unknown, vmId: string, step: string, left: string[]): VmqError {
  const base = isVmqError(e)
    ? e
    : new HypervisorError("hypervisor::failed", `${step} failed: ${String(e)}`, { cause: e });
  const message =
    left.length === 0
      ? `prepare of ${vmId} failed at ${step}: ${base.message} (completed steps were undone)`
      : `prepare of ${vmId} failed at ${step}: ${base.message}; cleanup failed, left behind: ${left.join("; ")}`;
  return new VmqError(base.code, message, {
    // Exception to the table: what was left behind must be cleaned up before a retry.
    retryable: base.retryable && left.length === 0,
    cause: e,
    details: { ...base.details, failedStep: step, leftBehind: left },
  });
}
