/**
 * QEMU-specific behaviour beyond the shared conformance suite, against real QEMU and the tiny
 * test guest: observed changes through watch (guest power-off, a killed QEMU), suppression of
 * our own calls, adoption after the worker is SIGKILLed, the cloud-init seed ISO, UEFI + VNC,
 * and failures that must leave nothing behind.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, readdir, readFile, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { createInterface } from "node:readline";
import { execa } from "execa";
import type { VmHandle, VmSpec } from "../../src/contracts/index.js";
import type { ObservedChange } from "../../src/hypervisor/index.js";
import { QemuBackend, type QemuBackendOptions } from "../../src/hypervisor/backends/qemu/index.js";
import { portHeldBy } from "../../src/hypervisor/backends/qemu/qemu-image.js";
import { isVmqError } from "../../src/lib/errors.js";
import { cleanupDataDir, qemuTestGuest, type QemuGuestImages } from "../helpers/qemu-guest.js";
import { skipWhenMissing, type MissingInput } from "../helpers/required.js";

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");

interface Ctx {
  guest: QemuGuestImages;
  dataDir: string;
  backend: QemuBackend;
  changes: ObservedChange[];
}

const spec = (imagePath: string, over: Partial<VmSpec> = {}): VmSpec => ({
  name: "qemu-test",
  imagePath,
  vcpus: 1,
  memoryMb: 128,
  network: { type: "user" },
  uefi: false,
  ...over,
});
const id = (n: string): string => `${n}-${randomUUID().slice(0, 8)}`;
const code = (c: string) => (e: unknown) => {
  assert.ok(isVmqError(e), String(e));
  assert.equal(e.code, c, e.message);
  return true;
};

async function waitFor<T>(what: string, f: () => T | undefined, ms: number): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe("QEMU backend specifics", { concurrency: true }, () => {
  let ctx: Ctx | undefined;
  let missing: MissingInput | undefined;
  let unwatch: (() => void) | undefined;
  const extraBackends: QemuBackend[] = [];
  before(async () => {
    const guest = await qemuTestGuest();
    if ("unavailable" in guest) {
      missing = { ...guest.unavailable, needed: "QEMU backend specifics" };
      return;
    }
    const dataDir = await mkdtemp(join(tmpdir(), "vmq-qemu-be-"));
    const backend = new QemuBackend({ dataDir, imageRoots: [guest.dir] });
    const changes: ObservedChange[] = [];
    unwatch = backend.watch((c) => changes.push(c));
    ctx = { guest, dataDir, backend, changes };
  });
  after(async () => {
    unwatch?.();
    for (const b of extraBackends) await b.close();
    if (ctx) {
      await ctx.backend.close();
      await cleanupDataDir(ctx.dataDir);
    }
  });
  const get = (t: { skip: (m: string) => void }): Ctx | undefined => {
    skipWhenMissing(t, missing);
    return ctx;
  };
  const other = (c: Ctx, over: Partial<QemuBackendOptions> = {}): QemuBackend => {
    const b = new QemuBackend({ dataDir: c.dataDir, imageRoots: [c.guest.dir], ...over });
    extraBackends.push(b);
    return b;
  };

  it("reports a guest that powers itself off through watch: stopped, guest-initiated, from QMP", async (t) => {
    const c = get(t);
    if (!c) return;
    const b = c.backend;
    const h = await b.start(await b.prepare(id("selfoff"), spec(c.guest.selfOffImage)));
    const change = await waitFor(
      "the guest's power-off",
      () => c.changes.find((x) => x.vmId === h.id),
      90_000,
    );
    assert.equal(change.state, "stopped");
    assert.equal(change.source, "qmp");
    assert.equal(change.guestInitiated, true);
    assert.equal(change.backend, "qemu");
    assert.equal(change.handle?.pid, undefined, "the reported handle has no pid");
    assert.equal(await b.state(h), "stopped");
    const log = await readFile(join(h.workDir, "console.log"), "utf8");
    assert.match(log, /VMQ-GUEST-POWEROFF \(self\)/);
    await b.destroy(h, { timeoutMs: 5000, force: "after-timeout" });
  });

  it("boots from a data dir whose path has a comma, a space, quotes and unicode (argv quoted per option)", async (t) => {
    const c = get(t);
    if (!c) return;
    // Every path QEMU is given lies under it: -drive, -chardev (key=value lists) and -pidfile.
    const dataDir = join(c.dataDir, "odd", `da,ta dir 'q' "é",,x`);
    const b = other(c, { dataDir });
    const h = await b.start(await b.prepare(id("comma"), spec(c.guest.image)));
    assert.ok(h.workDir.startsWith(dataDir), h.workDir);
    assert.equal(await b.state(h), "running", "QEMU took the argv and answers QMP");
    const pid = await readFile(join(h.workDir, "qemu.pid"), "utf8");
    assert.equal(Number(pid.trim()), h.pid, "the pid file is where vmq reads it");
    await waitFor(
      "the guest's ready marker on its console log",
      () => {
        const log = existsSync(join(h.workDir, "console.log"))
          ? String(readFileSync(join(h.workDir, "console.log")))
          : "";
        return log.includes("VMQ-GUEST-READY") ? true : undefined;
      },
      120_000,
    );
    const r = await b.stop(h, { timeoutMs: 60_000, force: "after-timeout" });
    assert.equal(r.how, "acpi", "the guest booted and answered the power button");
    await b.destroy(r.handle, { timeoutMs: 5000, force: "after-timeout" });
    assert.ok(!existsSync(h.workDir));
  });

  it("builds the NoCloud seed, suppresses its own suspend/resume, and observes a killed QEMU as a process change", async (t) => {
    const c = get(t);
    if (!c) return;
    const b = c.backend;
    const secret = "#cloud-config\npassword: hunter2-do-not-log\n";
    const h = await b.prepare(
      id("seed"),
      spec(c.guest.image, {
        diskGb: 1,
        cloudInit: { userData: secret, hostname: "seed-host", instanceId: "iid-42" },
      }),
    );
    assert.ok(h.seedIsoPath && existsSync(h.seedIsoPath));
    const info = await execa("isoinfo", ["-d", "-i", h.seedIsoPath]);
    assert.match(info.stdout, /Volume id: cidata/);
    const ud = await execa("isoinfo", ["-R", "-i", h.seedIsoPath, "-x", "/user-data"]);
    assert.equal(ud.stdout, secret.trimEnd());
    const md = await execa("isoinfo", ["-R", "-i", h.seedIsoPath, "-x", "/meta-data"]);
    assert.match(md.stdout, /instance-id: iid-42/);
    assert.match(md.stdout, /local-hostname: seed-host/);
    const img = JSON.parse(
      (await execa("qemu-img", ["info", "--output=json", h.overlayPath!])).stdout,
    ) as { "virtual-size": number; "backing-filename-format"?: string };
    assert.equal(img["virtual-size"], 1024 ** 3, "overlay grown to diskGb");
    assert.equal(img["backing-filename-format"], "raw", "base format detected");
    const record = JSON.parse(await readFile(join(h.workDir, "vm.json"), "utf8")) as VmHandle;
    assert.equal(record.id, h.id);
    assert.ok(h.sshHostPort && h.macAddr && h.accelerator === b.accelerator);

    const r = await b.start(h);
    assert.ok(r.pid);
    const cmdline = await readFile(`/proc/${r.pid}/cmdline`, "utf8");
    assert.ok(cmdline.includes("seed.iso"), "the seed ISO is attached");
    assert.ok(cmdline.includes(`hostfwd=tcp:127.0.0.1:${r.sshHostPort}-:22`));
    // User networking: SLIRP's guest address once the guest has it, and the forward to it.
    assert.deepEqual(await b.guestAddress(r), {
      ip: "10.0.2.15",
      forwards: [
        { protocol: "tcp", hostAddr: "127.0.0.1", hostPort: r.sshHostPort, guestPort: 22 },
      ],
    });
    assert.deepEqual(b.consoleEndpoint(r), {
      type: "unix-socket",
      path: join(h.workDir, "console.sock"),
    });
    // Alive, but QMP is held by this backend: another instance cannot tell, and says so.
    assert.equal(await other(c).state(r), "unknown");
    await b.suspend(r);
    assert.equal(await b.state(r), "suspended");
    await b.resume(r);
    await new Promise((res) => setTimeout(res, 300));
    assert.deepEqual(
      c.changes.filter((x) => x.vmId === h.id),
      [],
      "our own suspend/resume are not observations",
    );
    process.kill(r.pid, "SIGKILL");
    const change = await waitFor("the crash", () => c.changes.find((x) => x.vmId === h.id), 15_000);
    assert.equal(change.state, "stopped");
    assert.equal(change.source, "process");
    assert.notEqual(change.guestInitiated, true);
    assert.equal(await b.state(r), "stopped");
    await b.destroy(r, { timeoutMs: 5000, force: "after-timeout" });
    assert.equal(existsSync(h.workDir), false);
  });

  it("adopts guests that outlived a SIGKILLed worker: can stop one, and watches the other again", async (t) => {
    const c = get(t);
    if (!c) return;
    const ids = [id("adopt-a"), id("adopt-b")];
    const script = `
      import { QemuBackend } from ${JSON.stringify(join(REPO, "src/hypervisor/backends/qemu/index.ts"))};
      const b = new QemuBackend({ dataDir: ${JSON.stringify(c.dataDir)}, imageRoots: [${JSON.stringify(c.guest.dir)}] });
      const spec = ${JSON.stringify(spec(c.guest.image))};
      const hs = await Promise.all(${JSON.stringify(ids)}.map(async (id) => b.start(await b.prepare(id, spec))));
      process.stdout.write(JSON.stringify(hs) + "\\n");
      setInterval(() => {}, 1000);
    `;
    const worker = execa(
      process.execPath,
      ["--import", "tsx", "--input-type=module", "-e", script],
      {
        cwd: REPO,
        buffer: false,
        reject: false,
        stdin: "ignore",
        stderr: "inherit",
      },
    );
    const lines = createInterface({ input: worker.stdout });
    const first = await new Promise<string>((res, rej) => {
      lines.once("line", res);
      void worker.then(() => rej(new Error("the worker process ended before starting the VMs")));
    });
    lines.close();
    const [ha, hb] = JSON.parse(first) as [VmHandle, VmHandle];
    worker.kill("SIGKILL");
    await worker;

    const b2 = other(c);
    const seen: ObservedChange[] = [];
    b2.watch((x) => seen.push(x));
    await b2.adopt(ha);
    await b2.adopt(hb);
    assert.equal(await b2.state(ha), "running", "the guest survived the worker's SIGKILL");
    assert.equal(await b2.state(hb), "running");
    const stopped = await b2.stop(ha, { timeoutMs: 60_000, force: "after-timeout" });
    assert.equal(stopped.how, "acpi");
    assert.equal(await b2.state(ha), "stopped");
    process.kill(hb.pid!, "SIGKILL");
    const change = await waitFor(
      "the adopted VM's crash",
      () => seen.find((x) => x.vmId === hb.id),
      15_000,
    );
    assert.equal(change.source, "process");
    assert.equal(change.state, "stopped");
    assert.equal(seen.filter((x) => x.vmId === ha.id).length, 0, "our stop was not an observation");
    await b2.destroy(ha, { timeoutMs: 5000, force: "now" });
    await b2.destroy(hb, { timeoutMs: 5000, force: "now" });
  });

  it("boots UEFI with a per-VM copy of the OVMF vars and reports the VNC address", async (t) => {
    const c = get(t);
    if (!c) return;
    const ovmf = "/usr/share/OVMF/OVMF_CODE_4M.fd";
    const noOvmf = {
      missing: `OVMF not installed: no ${ovmf}`,
      needed: "QEMU UEFI boot",
      fix: "run ./setup.sh, which installs ovmf",
    };
    if (skipWhenMissing(t, existsSync(ovmf) ? undefined : noOvmf)) return;
    const b = other(c, { vnc: true });
    const h = await b.prepare(id("uefi"), spec(c.guest.image, { uefi: true }));
    const vars = join(h.workDir, "OVMF_VARS.fd");
    assert.equal((await stat(vars)).size, (await stat("/usr/share/OVMF/OVMF_VARS_4M.fd")).size);
    const r = await b.start(h);
    assert.match(r.vncAddr ?? "", /^127\.0\.0\.1:59[0-9]{2}$/);
    const cmdline = await readFile(`/proc/${r.pid}/cmdline`, "utf8");
    assert.ok(cmdline.includes(`unit=1,file=${vars}`), "the per-VM vars are the writable pflash");
    assert.equal(await b.state(r), "running");
    // Firmware without an OS ignores the power button: a cancelled graceful stop gives up
    // promptly (not after its 30 s timeout) and leaves the VM running.
    const began = Date.now();
    await assert.rejects(
      b.stop(r, { timeoutMs: 30_000, force: "after-timeout", signal: AbortSignal.timeout(300) }),
      code("hypervisor::aborted"),
    );
    assert.ok(Date.now() - began < 3000, `cancelled stop returned after ${Date.now() - began} ms`);
    assert.equal(await b.state(r), "running");
    const s = await b.stop(r, { timeoutMs: 1000, force: "now" });
    assert.equal(s.how, "forced");
    assert.equal(s.handle.vncAddr, undefined);
    assert.equal(s.handle.pid, undefined);
    await b.destroy(s.handle, { timeoutMs: 1000, force: "now" });
  });

  it("leaves nothing behind when prepare or start fails part-way", async (t) => {
    const c = get(t);
    if (!c) return;
    const before = new Set(await readdir(c.dataDir));
    const failed = {
      iso: id("fail-iso"),
      path: id("fail-path"),
      missing: id("fail-missing"),
      uefi: id("fail-uefi"),
      vnic: id("fail-vnic"),
    };
    const fresh = async () =>
      (await readdir(c.dataDir)).filter((f) => !before.has(f) && f.startsWith("fail-"));
    const isoless = other(c, { isoTool: "/nonexistent/genisoimage" });
    await assert.rejects(
      isoless.prepare(
        failed.iso,
        spec(c.guest.image, { cloudInit: { userData: "#cloud-config\n" } }),
      ),
      code("cloudinit::iso-failed"),
    );
    await assert.rejects(
      c.backend.prepare(failed.path, spec("../../etc/passwd")),
      code("hypervisor::invalid-path"),
    );
    await assert.rejects(
      c.backend.prepare(failed.missing, spec("nope.raw")),
      code("image::not-found"),
    );
    const noOvmf = other(c, { ovmfCode: "/nonexistent/OVMF_CODE.fd" });
    await assert.rejects(
      noOvmf.prepare(failed.uefi, spec(c.guest.image, { uefi: true })),
      code("qemu::uefi-unavailable"),
    );
    await assert.rejects(
      c.backend.prepare(
        failed.vnic,
        spec(c.guest.image, { network: { type: "vnic", name: "v0" } }),
      ),
      code("hypervisor::unsupported"),
    );
    assert.deepEqual(await fresh(), [], "no work dir survives a failed prepare");
    // The other tests of this file run alongside: ask per VM, not for a count.
    for (const vmId of Object.values(failed))
      assert.equal(portHeldBy(vmId), undefined, `nor an SSH port (${vmId})`);

    const h = await c.backend.prepare(id("fail-spawn"), spec(c.guest.image));
    await assert.rejects(
      c.backend.prepare(h.id, spec(c.guest.image)),
      code("hypervisor::invalid-state"),
    );
    await assert.rejects(
      other(c, { qemuBinary: "/nonexistent/qemu-system-x86_64" }).start(h),
      (e: unknown) => {
        code("qemu::spawn-failed")(e);
        assert.match((e as Error & { hint?: string }).hint ?? "", /qemu-system-x86/);
        return true;
      },
    );
    await assert.rejects(other(c, { machine: "no-such-machine" }).start(h), (e: unknown) => {
      code("qemu::spawn-failed")(e);
      assert.match((e as Error).message, /machine/i);
      return true;
    });
    assert.equal(await c.backend.state(h), "prepared", "a failed start leaves the VM prepared");
    assert.equal(portHeldBy(h.id), h.sshHostPort, "the prepared VM holds its SSH port");
    await c.backend.destroy(h, { timeoutMs: 1000, force: "now" });
    assert.equal(portHeldBy(h.id), undefined, "and gives it back when destroyed");
  });
});
