/**
 * A stopped QEMU VM's disk for a cold move: its overlay flattened with its base image into one
 * standalone qcow2 (`qemu-img convert`, which reads through the backing chain), written in the
 * VM's own work dir and read from there. Paths come from dataDir + vmId alone.
 */
import { createReadStream } from "node:fs";
import { rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { HypervisorError } from "../../errors.js";
import type { DiskExport } from "../../hypervisor.js";
import { requireWorkDir, type VmPaths } from "./qemu-files.js";

/** Read in the chunk size the export is sent in. */
const READ_BYTES = 512 * 1024;

export async function exportQemuDisk(
  qemuImg: string,
  p: VmPaths,
  vmId: string,
  signal?: AbortSignal,
): Promise<DiskExport> {
  requireWorkDir(p, vmId);
  const out = join(p.dir, "export.qcow2");
  // What an interrupted export left is never sent: it is made again from the overlay.
  await rm(out, { force: true });
  const r = await execa(qemuImg, ["convert", "-q", "-O", "qcow2", p.overlay, out], {
    reject: false,
    stdin: "ignore",
    ...(signal ? { cancelSignal: signal } : {}),
  });
  if (r.exitCode !== 0) {
    await rm(out, { force: true });
    const why = (r.stderr || (r.message ?? "")).trim().split("\n")[0];
    throw new HypervisorError("image::export-failed", `qemu-img convert of VM ${vmId}: ${why}`, {
      retryable: !signal?.aborted,
    });
  }
  const { size } = await stat(out);
  return {
    format: "qcow2",
    size,
    bytes: () => createReadStream(out, { highWaterMark: READ_BYTES }),
    release: () => rm(out, { force: true }),
  };
}
