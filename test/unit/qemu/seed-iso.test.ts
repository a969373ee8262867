/**
 * The QEMU cloud-init seed: createSeedIso writes the opened user-data and the meta-data (0600)
 * into the VM's work dir and hands only paths to the ISO tool (argument array, volume id
 * cidata); a spec whose user-data is still sealed, or only a digest, builds no seed at all.
 * A fake ISO tool records its arguments and the files it was given.
 */
import assert from "node:assert/strict";
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { createCurve } from "@nats-io/nkeys";
import { createSeedIso } from "../../../src/hypervisor/backends/qemu/qemu-image.js";
import { isVmqError } from "../../../src/lib/errors.js";
import { sealUserData, userDataDigest } from "../../../src/lib/user-data.js";

const FAKE_TOOL = `#!${process.execPath}
const fs = require("fs"), path = require("path");
const args = process.argv.slice(2);
const src = args[args.length - 1];
const files = {};
for (const f of fs.readdirSync(src)) files[f] = fs.readFileSync(path.join(src, f), "utf8");
fs.writeFileSync(args[args.indexOf("-output") + 1], JSON.stringify({ args, files }));
`;
const TEXT = "#cloud-config\npassword: s3cret\n";

describe("QEMU seed ISO", () => {
  let dir: string;
  let tool: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "vmq-seed-"));
    tool = join(dir, "fake-genisoimage");
    await writeFile(tool, FAKE_TOOL);
    await chmod(tool, 0o755);
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it("holds the opened user-data and the meta-data; the tool gets paths only", async () => {
    const work = await mkdtemp(join(dir, "vm-"));
    const iso = join(work, "seed.iso");
    await createSeedIso(tool, work, iso, { userData: TEXT, hostname: "web-1" }, "v1", "Web");
    const got = JSON.parse(await readFile(iso, "utf8")) as {
      args: string[];
      files: Record<string, string>;
    };
    assert.deepEqual(got.args, [
      "-output",
      iso,
      "-volid",
      "cidata",
      "-joliet",
      "-rock",
      "-quiet",
      join(work, "cidata"),
    ]);
    assert.equal(got.files["user-data"], TEXT);
    assert.equal(got.files["meta-data"], "instance-id: v1\nlocal-hostname: web-1\n");
    assert.equal((await stat(join(work, "cidata", "user-data"))).mode & 0o777, 0o600);
    assert.ok(!got.args.join(" ").includes("s3cret"), "the secret is never an argument");
  });

  it("refuses user-data that is still sealed, or only a digest, before running the tool", async () => {
    const sealed = sealUserData(TEXT, createCurve().getPublicKey());
    for (const ci of [
      { sealedUserData: sealed },
      { sealedUserData: sealed, userData: "" },
      { userDataDigest: userDataDigest(TEXT), userDataBytes: 10, userData: "" },
    ]) {
      const work = await mkdtemp(join(dir, "vm-"));
      const iso = join(work, "seed.iso");
      await assert.rejects(createSeedIso(tool, work, iso, ci, "v2", "w"), (e: unknown) =>
        isVmqError(e, "cloudinit::not-opened"),
      );
      assert.ok(!existsSync(iso), "no seed built");
    }
  });
});
