/**
 * The Hypervisor conformance suite against real QEMU (TCG here, KVM where /dev/kvm is usable)
 * with the tiny test guest built from Debian packages (test/helpers/qemu-guest.ts).
 */
import { randomUUID } from "node:crypto";
import { mkdtemp, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import type { VmHandle, VmSpec } from "../../src/contracts/index.js";
import { QemuBackend } from "../../src/hypervisor/backends/qemu/index.js";
import { cleanupDataDir, qemuTestGuest } from "../helpers/qemu-guest.js";
import { hypervisorConformance } from "./hypervisor.conformance.js";

/** The state letter of /proc/<pid>/stat ("R", "S", "T" stopped, "Z" zombie), or undefined when gone. */
async function procState(pid: number): Promise<string | undefined> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => undefined);
  return stat === undefined ? undefined : /\) (\S)/.exec(stat)?.[1];
}

/** The VM's QEMU, read straight from /proc: undefined once it has exited (gone or a zombie). */
async function qemuLeft(h: VmHandle): Promise<string | undefined> {
  if (h.pid === undefined || h.qmpSocket === undefined) return "the running handle has no pid";
  const state = await procState(h.pid);
  if (state === undefined || state === "Z") return undefined;
  const cmdline = await readFile(`/proc/${h.pid}/cmdline`, "utf8").catch(() => "");
  if (!cmdline.includes(h.qmpSocket)) return undefined; // the pid was reused by another program
  return `QEMU pid ${h.pid} of ${h.id} is still there (state ${state})`;
}

/** Freezes the VM's QEMU (SIGSTOP): it answers neither QMP nor SIGTERM; SIGKILL still ends it. */
async function freeze(h: VmHandle): Promise<void> {
  if (h.pid === undefined) throw new Error(`${h.id}: start returned no pid`);
  process.kill(h.pid, "SIGSTOP");
  for (let i = 0; (await procState(h.pid)) !== "T"; i++) {
    if (i > 100) throw new Error(`QEMU pid ${h.pid} did not stop on SIGSTOP`);
    await delay(20);
  }
}

hypervisorConformance("qemu", async () => {
  const guest = await qemuTestGuest();
  if ("unavailable" in guest)
    return { missing: { ...guest.unavailable, needed: "QEMU conformance" } };
  const dataDir = await mkdtemp(join(tmpdir(), "vmq-qemu-conf-"));
  const backend = new QemuBackend({ dataDir, imageRoots: [guest.dir] });
  // For the wedged QEMU: each QMP command it never answers costs qmpTimeoutMs, and SIGTERM
  // is given killGraceMs before SIGKILL; short ones keep the case quick.
  const quick = new QemuBackend({
    dataDir,
    imageRoots: [guest.dir],
    qmpTimeoutMs: 2000,
    killGraceMs: 1000,
  });
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
    // A frozen QEMU cannot act on SIGTERM: only SIGKILL ends it.
    wedged: { backend: quick, spec: spec(guest.image), wedge: freeze, how: "sigkill" },
    leftover: qemuLeft,
    // QEMU killed under the guest: the process is gone without a word on QMP.
    outside: {
      change: (vm) => {
        if (vm.pid) process.kill(vm.pid, "SIGKILL");
      },
      expect: { state: "stopped", source: "process", guestInitiated: false },
    },
    vmId: (n) => `${n}-${randomUUID().slice(0, 8)}`,
    bootTimeoutMs: 120_000,
    cleanup: async () => {
      await backend.close();
      await quick.close();
      await cleanupDataDir(dataDir);
    },
  };
});
