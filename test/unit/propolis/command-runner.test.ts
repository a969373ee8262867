import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { CommandRunner } from "../../../src/hypervisor/backends/propolis/command-runner.js";
import { isVmqError } from "../../../src/lib/errors.js";
import { FakeIllumos } from "../../helpers/fake-illumos/fake-illumos.js";

describe("CommandRunner", () => {
  let fi: FakeIllumos;
  let runner: CommandRunner;
  before(async () => {
    fi = await FakeIllumos.create();
    runner = new CommandRunner(fi.runnerOptions);
  });
  after(async () => {
    await fi.cleanup();
  });

  it("passes arguments verbatim with no shell in between", async () => {
    const marker = join(fi.root, "pwned");
    const hostile = [`$(touch ${marker})`, `; touch ${marker}`, "`id`", "a b", "*", "'\"", "|&>"];
    const r = await runner.run("zlogin", ["nosuchzone", ...hostile], { allowFailure: true });
    assert.equal(r.exitCode, 1);
    const last = (await fi.calls()).at(-1);
    assert.deepEqual(last, ["zlogin", "nosuchzone", ...hostile]);
    assert.equal(existsSync(marker), false);
  });

  it("puts stderr and the exit code into the coded error", async () => {
    await fi.setFaults([
      {
        tool: "zoneadm",
        sub: "boot",
        exitCode: 3,
        stderr: "zoneadm: zone 'z': boot failed: no memory",
        times: 1,
      },
    ]);
    await assert.rejects(runner.run("zoneadm", ["-z", "z", "boot"]), (e: unknown) => {
      assert.ok(isVmqError(e, "zone::command-failed"), String(e));
      assert.match(e.message, /exited 3: zoneadm: zone 'z': boot failed: no memory/);
      assert.equal(e.details?.exitCode, 3);
      assert.match(String(e.details?.stderr), /no memory/);
      return true;
    });
  });

  it("uses the caller's error code when given", async () => {
    await assert.rejects(
      runner.run("zfs", ["destroy", "rpool/none"], { errorCode: "hypervisor::failed" }),
      (e: unknown) => isVmqError(e, "hypervisor::failed"),
    );
  });

  it("kills a command that outlives its timeout", async () => {
    await fi.setFaults([{ tool: "zfs", sub: "list", sleepMs: 5_000, times: 1 }]);
    const began = Date.now();
    await assert.rejects(runner.run("zfs", ["list", "x/y"], { timeoutMs: 400 }), (e: unknown) =>
      isVmqError(e, "hypervisor::timeout"),
    );
    assert.ok(Date.now() - began < 3_000);
  });

  it("is cancelled by its AbortSignal, and refuses to start when already aborted", async () => {
    await fi.setFaults([{ tool: "zfs", sub: "list", sleepMs: 5_000, times: 1 }]);
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 200);
    await assert.rejects(runner.run("zfs", ["list", "x/y"], { signal: ac.signal }), (e: unknown) =>
      isVmqError(e, "hypervisor::aborted"),
    );
    const n = (await fi.calls()).length;
    await assert.rejects(
      runner.run("zfs", ["list"], { signal: AbortSignal.abort() }),
      (e: unknown) => isVmqError(e, "hypervisor::aborted"),
    );
    assert.equal((await fi.calls()).length, n, "nothing ran");
  });

  it("reports a missing binary as unavailable and rejects relative binary paths", async () => {
    const r = new CommandRunner({ binDir: join(fi.root, "nowhere") });
    await assert.rejects(r.run("zfs", ["list"]), (e: unknown) =>
      isVmqError(e, "hypervisor::backend-unavailable"),
    );
    assert.throws(
      () => new CommandRunner({ binaries: { zfs: "bin/zfs" } }),
      (e: unknown) => isVmqError(e, "hypervisor::invalid-path"),
    );
    assert.equal(
      new CommandRunner({ binaries: { zfs: "/usr/sbin/zfs" } }).binary("zfs"),
      "/usr/sbin/zfs",
    );
    assert.equal(new CommandRunner().binary("zoneadm"), "zoneadm");
  });
});
