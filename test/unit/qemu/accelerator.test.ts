import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
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
  it("uses KVM when the device opens read-write, TCG otherwise", async () => {
    const dir = await mkdtemp(join(tmpdir(), "vmq-accel-"));
    try {
      const usable = join(dir, "kvm");
      await writeFile(usable, "");
      assert.equal(detectAccelerator("auto", usable).accelerator, "kvm");
      const missing = detectAccelerator("auto", join(dir, "absent"));
      assert.equal(missing.accelerator, "tcg");
      assert.match(missing.reason, /ENOENT/);
      assert.equal(detectAccelerator("tcg", usable).accelerator, "tcg", "tcg is never upgraded");
      assert.throws(
        () => detectAccelerator("kvm", join(dir, "absent")),
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
    let kvmUsable = false;
    try {
      detectAccelerator("kvm");
      kvmUsable = true;
    } catch {
      kvmUsable = false;
    }
    assert.equal(auto.accelerator, kvmUsable ? "kvm" : "tcg");
  });
});
