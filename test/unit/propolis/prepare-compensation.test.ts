import assert from "node:assert/strict";
import { readdir } from "node:fs/promises";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { VmSpec } from "../../../src/contracts/index.js";
import { controlVnicName } from "../../../src/hypervisor/backends/propolis/zone-network.js";
import { isVmqError } from "../../../src/lib/errors.js";
import type { FakeFault } from "../../helpers/fake-illumos/fake-illumos.js";
import {
  makePropolisFixture,
  type PropolisFixture,
} from "../../helpers/fake-propolis/propolis-fixture.js";

const spec: VmSpec = {
  name: "comp",
  imagePath: "base",
  vcpus: 1,
  memoryMb: 256,
  network: { type: "vnic", name: "vnic0" },
  uefi: false,
  cloudInit: { userData: "#cloud-config\n" },
};

const BASE_DATASETS = [
  "rpool/images",
  "rpool/images/base",
  "rpool/images/base@latest",
  "rpool/vms",
];

describe("prepare: every step checked, completed steps undone in reverse", () => {
  let fx: PropolisFixture;
  before(async () => {
    fx = await makePropolisFixture();
  });
  after(async () => {
    await fx.cleanup();
  });

  const failAt: { step: string; fault: FakeFault; code: string; diskGb?: number }[] = [
    {
      step: "zfs clone",
      fault: { tool: "zfs", sub: "clone", exitCode: 1, stderr: "cannot create: out of space" },
      code: "image::zfs-failed",
    },
    {
      step: "disk size",
      fault: { tool: "zfs", sub: "set", exitCode: 1, stderr: "cannot set property: out of space" },
      code: "image::zfs-failed",
      diskGb: 20,
    },
    {
      step: "cloud-init seed",
      fault: { tool: "mkisofs", exitCode: 2, stderr: "mkisofs: broken" },
      code: "cloudinit::iso-failed",
    },
    {
      step: "control vnic",
      fault: { tool: "dladm", sub: "create-vnic", exitCode: 1, stderr: "dladm: link busy" },
      code: "zone::command-failed",
    },
    {
      step: "zonecfg",
      fault: { tool: "zonecfg", sub: "configure", exitCode: 1, stderr: "zonecfg: bad brand" },
      code: "zone::command-failed",
    },
    {
      step: "zone install",
      fault: { tool: "zoneadm", sub: "install", exitCode: 1, stderr: "install failed: no space" },
      code: "zone::command-failed",
    },
  ];

  for (const [i, c] of failAt.entries()) {
    it(`a failure at ${c.step} leaves nothing behind`, async () => {
      await fx.illumos.setFaults([{ ...c.fault, times: 1 }]);
      const vmId = `comp-${i}`;
      const s = c.diskGb === undefined ? spec : { ...spec, diskGb: c.diskGb };
      await assert.rejects(fx.backend.prepare(vmId, s), (e: unknown) => {
        assert.ok(isVmqError(e), String(e));
        assert.equal(e.code, c.code, e.message);
        assert.match(e.message, new RegExp(`failed at ${c.step}`));
        assert.match(e.message, /completed steps were undone/);
        const stderr = e.details?.stderr;
        assert.ok(typeof stderr === "string" && stderr.length > 0, "stderr kept in details");
        return true;
      });
      assert.deepEqual(await fx.illumos.datasets(), BASE_DATASETS);
      assert.deepEqual(await fx.illumos.zones(), []);
      assert.deepEqual(await fx.illumos.vnics(), [], "no control vnic left");
      assert.deepEqual(await readdir(fx.illumos.workRoot), []);
      assert.equal(
        await fx.backend.state({
          id: vmId,
          name: vmId,
          backend: "propolis",
          workDir: "",
          vcpus: 1,
          memoryMb: 256,
          network: { type: "none" },
          uefi: false,
        }),
        "destroyed",
      );
      await fx.illumos.setFaults([]);
      if (i === failAt.length - 1) {
        // The same id can be prepared again once the cause is gone.
        const h = await fx.backend.prepare(vmId, spec);
        assert.equal(await fx.backend.state(h), "prepared");
        await fx.backend.destroy(h, { timeoutMs: 1_000, force: "after-timeout" });
        assert.deepEqual(await fx.illumos.datasets(), BASE_DATASETS);
        assert.deepEqual(await fx.illumos.vnics(), []);
      }
    });
  }

  it("says what was left behind when compensation itself fails", async () => {
    await fx.illumos.setFaults([
      { tool: "zoneadm", sub: "install", exitCode: 1, stderr: "install failed" },
      { tool: "zfs", sub: "destroy", exitCode: 1, stderr: "dataset is busy", times: 1 },
    ]);
    await assert.rejects(fx.backend.prepare("comp-left", spec), (e: unknown) => {
      assert.ok(isVmqError(e));
      assert.match(e.message, /left behind: dataset rpool\/vms\/comp-left/);
      assert.equal(e.retryable, false);
      assert.deepEqual((e.details?.leftBehind as string[]).length, 1);
      return true;
    });
    assert.ok((await fx.illumos.datasets()).includes("rpool/vms/comp-left"));
    assert.deepEqual(await fx.illumos.zones(), [], "the zone itself was removed");
    await fx.illumos.setFaults([]);
  });

  it("refuses to prepare over leftovers instead of continuing", async () => {
    await fx.illumos.addDataset("rpool/vms/comp-stale");
    await assert.rejects(fx.backend.prepare("comp-stale", spec), (e: unknown) =>
      isVmqError(e, "hypervisor::invalid-state"),
    );
    assert.ok(
      (await fx.illumos.datasets()).includes("rpool/vms/comp-stale"),
      "not ours: untouched",
    );
  });

  it("validates names before running anything", async () => {
    const before = (await fx.illumos.calls()).length;
    for (const [bad, code] of [
      [{ ...spec, imagePath: "/images/../etc@x" }, "hypervisor::invalid-path"],
      [{ ...spec, imagePath: "base; rm -rf /" }, "hypervisor::invalid-path"],
      [{ ...spec, network: { type: "user" as const } }, "hypervisor::unsupported"],
    ] as const) {
      await assert.rejects(fx.backend.prepare("comp-bad", bad), (e: unknown) =>
        isVmqError(e, code),
      );
    }
    await assert.rejects(fx.backend.prepare("../etc", spec), (e: unknown) =>
      isVmqError(e, "hypervisor::invalid-path"),
    );
    assert.equal((await fx.illumos.calls()).length, before, "no tool ran");
  });

  it("configures the zone with brand, zonepath, nets, disk, mounts and the brand's attributes", async () => {
    const h = await fx.backend.prepare("comp-ok", { ...spec, diskGb: 12 });
    const z = await fx.illumos.zone("vmq-comp-ok");
    assert.ok(z);
    assert.equal(z.state, "installed");
    assert.equal(z.brand, "nebula-vm");
    assert.equal(z.zonepath, "/zones/vmq-comp-ok");
    // The server's address is the zone's own, on its control VNIC, from the configured range.
    const ip = h.propolisAddr?.split(":")[0] ?? "";
    assert.equal(h.propolisAddr, `${ip}:${fx.range.port}`);
    assert.ok(ip.startsWith(fx.range.first.split(".").slice(0, 3).join(".")), ip);
    const ctl = controlVnicName("vmq-comp-ok");
    assert.deepEqual(z.nets, [
      { physical: ctl, allowedAddress: `${ip}/24` },
      { physical: "vnic0" },
    ]);
    assert.ok((await fx.illumos.vnics()).includes(ctl), "the control vnic was created");
    assert.deepEqual(z.devices, ["/dev/zvol/rdsk/rpool/vms/comp-ok"]);
    assert.equal(z.attrs["vmq-propolis-addr"], h.propolisAddr);
    assert.equal(z.attrs["vmq-bootrom"], "/vmq-rom/OVMF_CODE.fd");
    assert.deepEqual(
      z.fs.map((f) => [f.dir, f.special]),
      [
        ["/vmq-rom", dirname(fx.illumos.bootromPath)],
        ["/vmq", join(fx.illumos.workRoot, "comp-ok")],
      ],
    );
    assert.equal((await fx.illumos.dataset("rpool/vms/comp-ok"))?.volsize, 12 * 2 ** 30);
    assert.equal(h.zoneName, "vmq-comp-ok");
    const clone = (await fx.illumos.calls()).find(
      (c) => c[0] === "zfs" && c[1] === "clone" && c[3]?.endsWith("comp-ok"),
    );
    assert.deepEqual(clone, ["zfs", "clone", "rpool/images/base@latest", "rpool/vms/comp-ok"]);
    await fx.backend.destroy(h, { timeoutMs: 1_000, force: "after-timeout" });
    assert.ok(!(await fx.illumos.vnics()).includes(ctl), "destroy deleted the control vnic");
  });

  it("refuses a diskGb below the image's size before making anything", async () => {
    const before = await fx.illumos.datasets();
    await assert.rejects(fx.backend.prepare("comp-small", { ...spec, diskGb: 5 }), (e: unknown) =>
      isVmqError(e, "image::disk-too-small"),
    );
    assert.deepEqual(await fx.illumos.datasets(), before);
    assert.equal(await fx.illumos.zone("vmq-comp-small"), undefined);
  });
});
