import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { parseLeases, parseNeighbours } from "../../../src/hypervisor/backends/qemu/guest-ip.js";
import { isOurQemu, readPidFile } from "../../../src/hypervisor/backends/qemu/process.js";
import {
  macFor,
  resolveImagePath,
  workDirFor,
} from "../../../src/hypervisor/backends/qemu/qemu-image.js";
import { isVmqError } from "../../../src/lib/errors.js";

const invalidPath = (e: unknown) => isVmqError(e, "hypervisor::invalid-path");

describe("path confinement", () => {
  let dir: string;
  let root: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "vmq-paths-"));
    root = join(dir, "images");
    await mkdir(join(root, "sub"), { recursive: true });
    await writeFile(join(root, "base.raw"), "x");
    await writeFile(join(root, "sub", "nested.qcow2"), "x");
    await writeFile(join(dir, "secret"), "x");
    await symlink(join(dir, "secret"), join(root, "escape.raw"));
    await symlink(join(root, "base.raw"), join(root, "alias.raw"));
    await symlink(dir, join(root, "updir"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("keeps a VM's work dir a direct child of dataDir", () => {
    assert.equal(workDirFor("/data", "vm-1"), "/data/vm-1");
    for (const bad of ["..", "../x", "a/b", "", ".hidden", "a/../../b", "/abs", "x\0y"]) {
      assert.throws(() => workDirFor("/data", bad), invalidPath, JSON.stringify(bad));
    }
  });

  it("resolves images inside the roots, relative or absolute, following symlinks that stay inside", async () => {
    assert.equal(await resolveImagePath("base.raw", [root]), join(root, "base.raw"));
    assert.equal(
      await resolveImagePath(join(root, "sub/nested.qcow2"), [root]),
      join(root, "sub/nested.qcow2"),
    );
    assert.equal(await resolveImagePath("alias.raw", [root]), join(root, "base.raw"));
    assert.equal(
      await resolveImagePath(join(root, "base.raw"), ["/nonexistent-root", root]),
      join(root, "base.raw"),
    );
  });

  it("refuses .., paths outside the roots and symlink escapes", async () => {
    await assert.rejects(resolveImagePath("../secret", [root]), invalidPath);
    await assert.rejects(resolveImagePath(join(root, "sub/../../secret"), [root]), invalidPath);
    await assert.rejects(resolveImagePath(join(dir, "secret"), [root]), invalidPath);
    await assert.rejects(resolveImagePath("/etc/passwd", [root]), invalidPath);
    await assert.rejects(resolveImagePath("escape.raw", [root]), invalidPath);
    await assert.rejects(resolveImagePath("updir/secret", [root]), invalidPath);
    await assert.rejects(resolveImagePath("base.raw", []), invalidPath);
    await assert.rejects(
      resolveImagePath(`${root}2/base.raw`, [root]),
      invalidPath,
      "a sibling with the root as prefix",
    );
  });

  it("reports a missing image as image::not-found", async () => {
    await assert.rejects(resolveImagePath("nope.qcow2", [root]), (e: unknown) =>
      isVmqError(e, "image::not-found"),
    );
  });

  it("reads only well-formed pid files and never takes a foreign pid for QEMU", async () => {
    const f = join(dir, "pid");
    await writeFile(f, "1234\n");
    assert.equal(await readPidFile(f), 1234);
    for (const bad of ["", "12a", "-5", "1", "99999999999"]) {
      await writeFile(f, bad);
      assert.equal(await readPidFile(f), undefined, bad);
    }
    assert.equal(await readPidFile(join(dir, "absent")), undefined);
    // This test process is alive but is not a QEMU owning that socket.
    assert.equal(await isOurQemu(process.pid, join(dir, "qmp.sock")), false);
  });
});

describe("MAC and guest IP", () => {
  it("derives a stable, locally administered MAC per vmId", () => {
    const a = macFor("vm-a");
    assert.match(a, /^52:54:00(:[0-9a-f]{2}){3}$/);
    assert.equal(macFor("vm-a"), a);
    assert.notEqual(macFor("vm-b"), a);
    // 0x52: the locally-administered bit (0x02) set, multicast bit (0x01) clear.
    assert.equal(Number.parseInt(a.slice(0, 2), 16) & 0x03, 0x02);
  });

  it("matches neighbour entries and leases by exact MAC only", () => {
    const neigh = JSON.stringify([
      { dst: "10.0.0.5", lladdr: "52:54:00:00:00:01", state: ["REACHABLE"] },
      { dst: "10.0.0.6", lladdr: "52:54:00:00:00:02", state: ["STALE"] },
      { dst: "10.0.0.7", lladdr: "52:54:00:00:00:02", state: ["FAILED"] },
      { dst: "fe80::1", lladdr: "52:54:00:00:00:02", state: ["REACHABLE"] },
    ]);
    assert.deepEqual(parseNeighbours(neigh, "52:54:00:00:00:02"), ["10.0.0.6"]);
    assert.deepEqual(parseNeighbours(neigh, "52:54:00:00:00:03"), []);
    assert.deepEqual(parseNeighbours("not json", "52:54:00:00:00:02"), []);
    const leases = [
      "1700000000 52:54:00:00:00:01 10.0.0.5 vm1 *",
      "1700000001 52:54:00:00:00:02 10.0.0.9 vm2 *",
      "garbage",
    ].join("\n");
    assert.deepEqual(parseLeases(leases, "52:54:00:00:00:02"), ["10.0.0.9"]);
    assert.deepEqual(parseLeases(leases, "52:54:00:00:00:0a"), []);
  });
});
