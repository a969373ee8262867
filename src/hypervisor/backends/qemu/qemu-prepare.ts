/**
 * prepare: a VM's work dir under dataDir with a qcow2 overlay over a base image from the image
 * roots, the cloud-init seed ISO, a copy of the UEFI vars, and vm.json. A prepare that fails
 * part-way leaves nothing behind.
 */
import { existsSync } from "node:fs";
import { copyFile, mkdir, rm } from "node:fs/promises";
import type { VmHandle, VmSpec } from "../../../contracts/index.js";
import { checkAborted, HypervisorError, localImagePath } from "../../errors.js";
import type { Accelerator } from "./accelerator.js";
import { SOCKET_PATH_MAX, vmPaths, writeRecord } from "./qemu-files.js";
import {
  createOverlay,
  createSeedIso,
  freePort,
  macFor,
  releasePort,
  resolveImagePath,
} from "./qemu-image.js";
import type { QemuOptions } from "./qemu-options.js";

export async function prepareQemuVm(
  o: QemuOptions,
  accelerator: Accelerator,
  vmId: string,
  spec: VmSpec,
  signal: AbortSignal | undefined,
): Promise<{ handle: VmHandle; image: string }> {
  const p = vmPaths(o.dataDir, vmId);
  if (spec.network.type === "vnic") {
    throw new HypervisorError("hypervisor::unsupported", "vnic networking exists only on illumos");
  }
  if (p.qmp.length > SOCKET_PATH_MAX || p.console.length > SOCKET_PATH_MAX) {
    throw new HypervisorError(
      "hypervisor::invalid-path",
      `work dir ${p.dir} is too long for unix sockets`,
      { hint: "Use a shorter dataDir (unix socket paths are limited to 107 bytes)." },
    );
  }
  if (spec.uefi && (!existsSync(o.ovmfCode) || !existsSync(o.ovmfVars))) {
    throw new HypervisorError("qemu::uefi-unavailable", `OVMF firmware not found (${o.ovmfCode})`);
  }
  const base = await resolveImagePath(localImagePath(spec), o.imageRoots);
  checkAborted(signal, "qemu prepare");
  await mkdir(o.dataDir, { recursive: true });
  try {
    await mkdir(p.dir, { mode: 0o700 });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "EEXIST") {
      throw new HypervisorError("hypervisor::invalid-state", `qemu VM ${vmId} already exists`);
    }
    throw e;
  }
  try {
    await createOverlay(o.qemuImgBinary, base, p.overlay, spec.diskGb, signal);
    checkAborted(signal, "qemu prepare");
    if (spec.cloudInit) {
      await createSeedIso(o.isoTool, p.dir, p.seed, spec.cloudInit, vmId, spec.name, signal);
      checkAborted(signal, "qemu prepare");
    }
    if (spec.uefi) await copyFile(o.ovmfVars, p.vars);
    const handle: VmHandle = {
      id: vmId,
      name: spec.name,
      backend: "qemu",
      workDir: p.dir,
      overlayPath: p.overlay,
      ...(spec.cloudInit ? { seedIsoPath: p.seed } : {}),
      qmpSocket: p.qmp,
      consoleSocket: p.console,
      vcpus: spec.vcpus,
      memoryMb: spec.memoryMb,
      ...(spec.diskGb === undefined ? {} : { diskGb: spec.diskGb }),
      network: spec.network,
      ...(spec.network.type === "user" ? { sshHostPort: await freePort(vmId) } : {}),
      ...(spec.network.type === "none" ? {} : { macAddr: macFor(vmId) }),
      uefi: spec.uefi,
      accelerator,
    };
    await writeRecord(p, handle);
    checkAborted(signal, "qemu prepare");
    return { handle, image: base };
  } catch (e) {
    // Nothing left behind: the work dir is ours alone (created above, EEXIST refused).
    await rm(p.dir, { recursive: true, force: true });
    releasePort(vmId);
    throw e;
  }
}
