/**
 * The Hypervisor conformance suite against real QEMU (TCG here, KVM where /dev/kvm is usable)
 * with the tiny test guest built from Debian packages (test/helpers/qemu-guest.ts).
 */
import { randomUUID } from "node:crypto";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { VmSpec } from "../../src/contracts/index.js";
import { QemuBackend } from "../../src/hypervisor/backends/qemu/index.js";
import { cleanupDataDir, qemuTestGuest } from "../helpers/qemu-guest.js";
import { hypervisorConformance } from "./hypervisor.conformance.js";

hypervisorConformance("qemu", async () => {
  const guest = await qemuTestGuest();
  if ("skip" in guest) {
    process.stderr.write(`SKIPPED qemu conformance: ${guest.skip}\n`);
    return undefined;
  }
  const dataDir = await mkdtemp(join(tmpdir(), "vmq-qemu-conf-"));
  const backend = new QemuBackend({ dataDir, imageRoots: [guest.dir] });
  const spec = (imagePath: string): VmSpec => ({
    name: "conf",
    imagePath,
    vcpus: 1,
    memoryMb: 128,
    network: { type: "user" },
    uefi: false,
  });
  return {
    backend,
    spec: spec(guest.image),
    // QEMU itself exits on SIGTERM: a guest that ignores the power button ends there.
    stubborn: { spec: spec(guest.stubbornImage), how: "sigterm" },
    vmId: (n) => `${n}-${randomUUID().slice(0, 8)}`,
    bootTimeoutMs: 120_000,
    cleanup: async () => {
      await backend.close();
      await cleanupDataDir(dataDir);
    },
  };
});
