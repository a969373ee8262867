/**
 * The host key file: created 0600 on first start (and only once), reused after, refused when
 * group or others may read it or when it holds no curve seed (without quoting it); a file given
 * by --host-key-file must exist.
 */
import assert from "node:assert/strict";
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { isVmqError } from "../../../src/lib/errors.js";
import { sealUserData } from "../../../src/lib/user-data.js";
import { loadHostKey } from "../../../src/worker/secrets/host-key.js";

const code = (c: string) => (e: unknown) => isVmqError(e) && e.code === c;

describe("host key file", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "vmq-hostkey-"));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it("is created 0600 under the data dir once, then reused", async () => {
    const dataDir = join(dir, "a", "data");
    const first = await loadHostKey({ dataDir });
    assert.equal(first.created, true);
    assert.equal(first.file, join(dataDir, "host.xk"));
    assert.equal((await stat(first.file)).mode & 0o777, 0o600);
    assert.match(await readFile(first.file, "utf8"), /^SX[A-Z2-7]+\n$/);
    const again = await loadHostKey({ dataDir });
    assert.equal(again.created, false);
    assert.equal(again.publicKey, first.publicKey);
    assert.equal(again.open(sealUserData("hello", first.publicKey)), "hello");
    // Two starts at once write one key between them.
    const racing = join(dir, "race");
    const [x, y] = await Promise.all([
      loadHostKey({ dataDir: racing }),
      loadHostKey({ dataDir: racing }),
    ]);
    assert.equal(x.publicKey, y.publicKey);
  });

  it("refuses a file group or others may read or write", async () => {
    const dataDir = join(dir, "b");
    const k = await loadHostKey({ dataDir });
    for (const mode of [0o644, 0o640, 0o604, 0o620]) {
      await chmod(k.file, mode);
      await assert.rejects(loadHostKey({ dataDir }), (e: unknown) => {
        assert.ok(code("hostkey::insecure-file")(e), String(e));
        assert.match((e as Error).message, new RegExp(mode.toString(8)));
        assert.match((e as { hint: string }).hint, /chmod 600/);
        return true;
      });
    }
    await chmod(k.file, 0o400);
    assert.equal((await loadHostKey({ dataDir })).publicKey, k.publicKey, "0400 is fine");
  });

  it("a given file must exist and hold a curve seed, which is never quoted", async () => {
    const file = join(dir, "given.xk");
    await assert.rejects(loadHostKey({ dataDir: dir, file }), code("config::unreadable-file"));
    for (const text of ["SUAGARBAGE-secret\n", "", "SXAAAA\n"]) {
      await writeFile(file, text, { mode: 0o600 });
      await assert.rejects(loadHostKey({ dataDir: dir, file }), (e: unknown) => {
        assert.ok(code("hostkey::invalid")(e), String(e));
        assert.ok(!(e as Error).message.includes("GARBAGE"));
        return true;
      });
    }
  });
});
