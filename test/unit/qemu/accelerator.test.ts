import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import {
  defaultCpuModel,
  detectAccelerator,
} from "../../../src/hypervisor/backends/qemu/accelerator.js";
import { QemuBackend } from "../../../src/hypervisor/backends/qemu/index.js";
import { isVmqError } from "../../../src/lib/errors.js";

describe("accelerator detection", () => {
  it("uses KVM when the device opens read-write on a CPU with VMX/SVM, TCG otherwise", async () => {
    const dir = await mkdtemp(join(tmpdir(), "vmq-accel-"));
    try {
      const device = join(dir, "kvm");
      await writeFile(device, "");
      const modules = join(dir, "modules");
      await mkdir(modules);
      const cpuinfo = join(dir, "cpuinfo");
      const cpu = (flags: string) => writeFile(cpuinfo, `processor\t: 0\nflags\t\t: ${flags}\n`);
      const probe = { device, cpuinfo, modules };

      await cpu("fpu vme de pse tsc msr pae vmx sse2");
      assert.equal(detectAccelerator("auto", probe).accelerator, "kvm");
      await cpu("fpu vme de pse svm sse2");
      assert.equal(detectAccelerator("auto", probe).accelerator, "kvm");

      // A /dev/kvm with no hardware virtualization behind it is not used unless asked for.
      await cpu("fpu vme de pse tsc msr pae sse2 hypervisor");
      const noHw = detectAccelerator("auto", probe);
      assert.equal(noHw.accelerator, "tcg");
      assert.match(noHw.reason, /no vmx or svm/);
      assert.equal(detectAccelerator("kvm", probe).accelerator, "kvm", "kvm is honoured");

      // Nested PVM (a Firecracker sandbox, say) serves /dev/kvm from kvm-pvm.
      await cpu("fpu vmx sse2");
      await mkdir(join(modules, "kvm_pvm"));
      const pvm = detectAccelerator("auto", probe);
      assert.equal(pvm.accelerator, "tcg");
      assert.match(pvm.reason, /kvm-pvm/);

      const missing = detectAccelerator("auto", { ...probe, device: join(dir, "absent") });
      assert.equal(missing.accelerator, "tcg");
      assert.match(missing.reason, /ENOENT/);
      assert.equal(detectAccelerator("tcg", probe).accelerator, "tcg", "tcg is never upgraded");
      assert.throws(
        () => detectAccelerator("kvm", { ...probe, device: join(dir, "absent") }),
        (e: unknown) => isVmqError(e, "qemu::kvm-unavailable"),
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("defaults to safe CPU models: max under TCG, kvm64 under KVM", () => {
    assert.equal(defaultCpuModel("tcg"), "max");
    assert.equal(defaultCpuModel("kvm"), "kvm64");
  });

  it("makes the choice visible on the backend and lets the cpu model be overridden", () => {
    const b = new QemuBackend({ dataDir: "/tmp/none", imageRoots: [], accelerator: "tcg" });
    assert.equal(b.accelerator, "tcg");
    assert.equal(b.cpuModel, "max");
    const c = new QemuBackend({
      dataDir: "/tmp/none",
      imageRoots: [],
      accelerator: "tcg",
      cpuModel: "qemu64",
    });
    assert.equal(c.cpuModel, "qemu64");
    const auto = new QemuBackend({ dataDir: "/tmp/none", imageRoots: [] });
    const host = detectAccelerator("auto");
    assert.equal(auto.accelerator, host.accelerator);
    assert.equal(auto.acceleratorReason, host.reason);
  });
});
