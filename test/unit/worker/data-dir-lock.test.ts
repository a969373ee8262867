import assert from "node:assert/strict";
import { mkdtemp, readdir, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { execa } from "execa";
import { isVmqError } from "../../../src/lib/errors.js";
import { silentLogger } from "../../../src/observability/logger.js";
import { DataDirLock, LOCK_SOCKET, probeLock } from "../../../src/worker/data-dir-lock.js";

describe("DataDirLock", () => {
  let root: string;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), "vmq-lock-unit-"));
  });
  after(() => rm(root, { recursive: true, force: true }));

  it("lets one holder in; the next is refused with the holder's pid until it lets go", async () => {
    const dir = join(root, "one");
    const a = new DataDirLock(dir, silentLogger());
    await a.start();
    assert.ok(a.fd !== undefined && a.fd >= 0, "a descriptor a child can inherit");
    const b = new DataDirLock(dir, silentLogger());
    await assert.rejects(b.start(), (e: unknown) => {
      assert.ok(isVmqError(e, "worker::data-dir-locked"), String(e));
      assert.match(e.message, new RegExp(`vmq worker pid ${process.pid}\\b`));
      return true;
    });
    await a.sharedWith(4242);
    const probe = await probeLock(join(dir, LOCK_SOCKET));
    assert.deepEqual(probe.kind === "live" ? probe.holder?.natsServerPid : probe, 4242);
    await a.stop();
    assert.deepEqual(await readdir(dir), [], "a clean release leaves no file");
    await b.start();
    await b.stop();
  });

  it("takes over the socket file of a holder that died without letting go", async () => {
    const dir = join(root, "stale");
    const first = new DataDirLock(dir, silentLogger());
    await first.start();
    await first.stop();
    // A holder killed with SIGKILL: its socket file stays, nobody listens on it.
    const child = execa(
      process.execPath,
      [
        "-e",
        `require("node:net").createServer().listen(process.argv[1], () => console.log("up"))`,
        join(dir, LOCK_SOCKET),
      ],
      { reject: false },
    );
    await new Promise<void>((r) => child.stdout.once("data", () => r()));
    child.kill("SIGKILL");
    await child;
    assert.ok((await stat(join(dir, LOCK_SOCKET))).isSocket(), "the stale socket file is there");
    assert.equal((await probeLock(join(dir, LOCK_SOCKET))).kind, "stale");
    const next = new DataDirLock(dir, silentLogger());
    await next.start();
    assert.equal((await probeLock(join(dir, LOCK_SOCKET))).kind, "live");
    await next.stop();
  });

  it("says gone for no file at all", async () => {
    assert.equal((await probeLock(join(root, "nothing", LOCK_SOCKET))).kind, "gone");
  });
});
