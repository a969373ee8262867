/**
 * The files of one QEMU VM: every path from dataDir + vmId alone (never from a handle's
 * fields), and vm.json, the handle a restarted worker adopts.
 */
import { existsSync } from "node:fs";
import { readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { VmHandle } from "../../../contracts/index.js";
import { HypervisorError } from "../../errors.js";
import { workDirFor } from "./qemu-image.js";

/** Unix socket paths longer than this do not fit in sockaddr_un. */
export const SOCKET_PATH_MAX = 107;

export interface VmPaths {
  dir: string;
  overlay: string;
  seed: string;
  qmp: string;
  console: string;
  consoleLog: string;
  pid: string;
  vars: string;
  started: string;
  record: string;
}

/** Every path of a VM, from dataDir and the vmId alone (never from a handle's fields). */
export function vmPaths(dataDir: string, vmId: string): VmPaths {
  const dir = workDirFor(dataDir, vmId);
  return {
    dir,
    overlay: join(dir, "overlay.qcow2"),
    seed: join(dir, "seed.iso"),
    qmp: join(dir, "qmp.sock"),
    console: join(dir, "console.sock"),
    consoleLog: join(dir, "console.log"),
    pid: join(dir, "qemu.pid"),
    vars: join(dir, "OVMF_VARS.fd"),
    started: join(dir, "started"),
    record: join(dir, "vm.json"),
  };
}

/** Throws hypervisor::not-found when the VM's work dir is gone. */
export function requireWorkDir(p: VmPaths, vmId: string): void {
  if (!existsSync(p.dir))
    throw new HypervisorError("hypervisor::not-found", `qemu VM ${vmId} does not exist`);
}

/** vm.json: the handle, for adoption by a restarted worker (whole file, then rename). */
export async function writeRecord(p: VmPaths, handle: VmHandle): Promise<void> {
  await writeFile(`${p.record}.tmp`, `${JSON.stringify(handle, null, 2)}\n`, { mode: 0o600 });
  await rename(`${p.record}.tmp`, p.record);
}

export async function readRecord(p: VmPaths): Promise<VmHandle> {
  return JSON.parse(await readFile(p.record, "utf8")) as VmHandle;
}

/** vm.json when it holds a valid handle of this VM, else undefined. */
export async function recordedHandle(p: VmPaths, vmId: string): Promise<VmHandle | undefined> {
  const parsed = VmHandle.safeParse(await readRecord(p).catch(() => undefined));
  return parsed.success && parsed.data.id === vmId ? parsed.data : undefined;
}
