/**
 * Images through the object store (issue 21, items 1-2), with a real nats-server, the built
 * CLI and worker processes: push/ls/inspect/tag/rm round-trip a 64 MiB image; 8 concurrent
 * prepares by name download it once and verify it; a tampered object fails its prepare with
 * image::digest-mismatch and leaves no file; a SIGKILL half-way through a download leaves no
 * image in use and the next start finishes the prepare.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Objm } from "@nats-io/obj";
import type { NatsConnection } from "@nats-io/transport-node";
import { ImageStore, VmqClient } from "../../src/client/index.js";
import type { ImageInfo } from "../../src/contracts/index.js";
import { runVmq } from "../helpers/cli.js";
import { NatsServer, testPrefix } from "../helpers/nats-server.js";
import { SPEC, eventually } from "../helpers/worker-harness.js";
import { WorkerProcess } from "../helpers/worker-process.js";

const MiB = 1024 * 1024;
const sha = (b: Buffer): string => `sha256:${createHash("sha256").update(b).digest("hex")}`;

const freePort = (): Promise<number> =>
  new Promise((res) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const a = s.address();
      s.close(() => res(typeof a === "object" && a ? a.port : 0));
    });
  });

describe("images: object store and host cache", { timeout: 240_000 }, () => {
  let server: NatsServer;
  let nc: NatsConnection;
  let prefix: string;
  let client: VmqClient;
  let store: ImageStore;
  let dir: string;
  let image: Buffer;
  let imageFile: string;
  let worker: WorkerProcess;
  let port: number;

  const args = (host: string, data: string, http?: number) => [
    ...["--nats", server.url, "--prefix", prefix, "--host", host, "--data-dir", data],
    ...["--noop-state-dir", join(data, "noop"), "--heartbeat-ms", "300", "--ack-wait-ms", "3000"],
    ...(http ? ["--http", `127.0.0.1:${http}`] : []),
  ];
  const vmq = (a: string[]) =>
    runVmq(a, { env: { VMQ_NATS_URL: server.url, VMQ_PREFIX: prefix }, timeout: 120_000 });
  const ready = (host: string) =>
    eventually(
      async () => (await client.hosts()).find((x) => x.host === host && x.state === "running"),
      30_000,
      `${host} ready`,
    );
  const metrics = async () => (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const metric = (text: string, name: string) =>
    Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1] ?? NaN);

  before(async () => {
    server = await NatsServer.start();
    nc = await server.connect();
    prefix = testPrefix();
    client = new VmqClient(nc, { prefix, timeoutMs: 60_000 });
    store = new ImageStore(nc, { prefix });
    dir = await mkdtemp(join(tmpdir(), "vmq-images-"));
    image = randomBytes(64 * MiB);
    imageFile = join(dir, "base.img");
    await writeFile(imageFile, image);
    port = await freePort();
    // The first worker provisions the images bucket with the rest.
    worker = new WorkerProcess(args("h1", join(dir, "h1"), port)).start();
    await ready("h1");
  });
  after(async () => {
    await worker?.kill();
    await nc?.close();
    await server?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("push, ls, inspect, tag and rm round-trip a 64 MiB image with its SHA-256", async () => {
    const pushed = await vmq(["image", "push", imageFile, "--name", "rt", "--tag", "v1", "--json"]);
    assert.equal(pushed.exitCode, 0, String(pushed.stderr));
    const info = JSON.parse(String(pushed.stdout)) as ImageInfo;
    assert.equal(info.digest, sha(image));
    assert.equal(info.size, image.length);
    assert.deepEqual(info.tags, ["v1"]);
    // The stored bytes are the file's.
    const os = await new Objm(nc).open(`${prefix}-images`);
    const blob = await os.getBlob(`rt@${info.digest}`);
    assert.ok(blob && sha(Buffer.from(blob)) === info.digest);
    assert.equal((await vmq(["image", "tag", "rt:v1", "v2"])).exitCode, 0);
    const ls = JSON.parse(String((await vmq(["image", "ls", "--json"])).stdout)) as ImageInfo[];
    assert.deepEqual(
      ls.map((i) => [i.name, i.digest, i.tags]),
      [["rt", info.digest, ["v1", "v2"]]],
    );
    const byDigest = await vmq(["image", "inspect", `rt@${info.digest}`]);
    assert.equal((JSON.parse(String(byDigest.stdout)) as ImageInfo).size, image.length);
    // Removing one tag keeps the image; removing it by digest takes its other tags along.
    assert.equal((await vmq(["image", "rm", "rt:v1"])).exitCode, 0);
    assert.deepEqual((await store.inspect("rt:v2")).tags, ["v2"]);
    assert.equal((await vmq(["image", "rm", `rt@${info.digest}`])).exitCode, 0);
    assert.deepEqual(await store.list(), []);
    const gone = await vmq(["image", "inspect", "rt:v2"]);
    assert.notEqual(gone.exitCode, 0);
    assert.match(String(gone.stderr), /image::not-found/);
    // Names are validated before anything is sent.
    const bad = await vmq(["image", "push", imageFile, "--name", "Bad/Name"]);
    assert.match(String(bad.stderr), /image::invalid-ref/);
  });

  it("vmq image push refuses a missing file, a directory and a bad name: exit 2, one coded line, nothing stored", async () => {
    const before = await store.list();
    const [missing, directory, badName] = await Promise.all([
      vmq(["image", "push", join(dir, "no-such.img"), "--name", "base"]),
      vmq(["image", "push", dir, "--name", "base"]),
      vmq(["image", "push", imageFile, "--name", "Bad/Name"]),
    ]);
    for (const r of [missing, directory, badName]) {
      assert.equal(r.exitCode, 2, r.stderr);
      assert.equal(String(r.stderr).trim().split("\n").length, 1, String(r.stderr));
    }
    assert.match(String(missing.stderr), /ENOENT \[config::unreadable-file\]/);
    assert.match(String(directory.stderr), /not a regular file \[config::unreadable-file\]/);
    assert.match(String(badName.stderr), /\[image::invalid-ref\]/);
    assert.deepEqual(await store.list(), before);
  });

  it("8 concurrent prepares by name download the image once and verify it", async () => {
    const info = await store.push(imageFile, { name: "base", tag: "v1" });
    const before = await metrics();
    const results = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        client.send("h1", {
          type: "vm.prepare",
          vmId: `img-${i}`,
          spec: { ...SPEC, imagePath: undefined, image: "base:v1" },
        }),
      ),
    );
    for (const r of results) {
      assert.equal(r.outcome.type, "vm.prepared", JSON.stringify(r.outcome));
      const handle = (r.outcome as { handle?: { imageDigest?: string } }).handle;
      assert.equal(handle?.imageDigest, info.digest);
    }
    const cached = join(dir, "h1", "images", info.digest.slice(7));
    assert.equal(sha(await readFile(cached)), info.digest);
    const m = await metrics();
    assert.equal(
      metric(m, "vmq_image_fetches_total") - metric(before, "vmq_image_fetches_total"),
      1,
    );
    assert.equal(metric(m, "vmq_image_fetched_bytes_total"), image.length);
    assert.equal(metric(m, "vmq_image_cache_misses_total"), 8);
    // Nothing is left counted as under way once the download ended.
    assert.equal(metric(m, "vmq_image_downloads"), 0);
    assert.equal(metric(m, "vmq_image_downloading_bytes"), 0);
    // A later prepare of the same image is a hit, also by digest.
    const again = await client.send("h1", {
      type: "vm.prepare",
      vmId: "img-9",
      spec: { ...SPEC, imagePath: undefined, image: `base@${info.digest}` },
    });
    assert.equal(again.outcome.type, "vm.prepared");
    const m2 = await metrics();
    assert.equal(metric(m2, "vmq_image_fetches_total"), 1);
    assert.equal(metric(m2, "vmq_image_cache_hits_total"), 1);
  });

  it("a tampered object fails its prepare with image::digest-mismatch and leaves no file", async () => {
    const small = randomBytes(3 * MiB);
    const smallFile = join(dir, "small.img");
    await writeFile(smallFile, small);
    const info = await store.push(smallFile, { name: "bad", tag: "v1" });
    const os = await new Objm(nc).open(`${prefix}-images`);
    const obj = (await os.info(`bad@${info.digest}`))!;
    // Same size, one byte flipped: the chunks are replaced under the object's nuid.
    const chunks = `$O.${prefix}-images.C.${obj.nuid}`;
    await (await jetstreamManager(nc)).streams.purge(`OBJ_${prefix}-images`, { filter: chunks });
    const tampered = Buffer.from(small);
    tampered[1234] = tampered[1234]! ^ 0xff;
    const js = jetstream(nc);
    for (let at = 0; at < tampered.length; at += 512 * 1024)
      await js.publish(chunks, tampered.subarray(at, at + 512 * 1024));
    const r = await client.send("h1", {
      type: "vm.prepare",
      vmId: "bad-1",
      spec: { ...SPEC, imagePath: undefined, image: "bad:v1" },
    });
    assert.equal(r.outcome.type, "vm.command-failed");
    assert.equal((r.outcome as { code?: string }).code, "image::digest-mismatch");
    const images = join(dir, "h1", "images");
    assert.equal(existsSync(join(images, info.digest.slice(7))), false);
    assert.deepEqual(await readdir(join(images, ".partial")), []);

    // Metadata that disagrees with the object's name is refused the same way.
    const other = await store.push(smallFile, { name: "meta", tag: "v1" });
    await os.update(`meta@${other.digest}`, {
      metadata: { "vmq-digest": `sha256:${"0".repeat(64)}` },
    });
    const r2 = await client.send("h1", {
      type: "vm.prepare",
      vmId: "bad-2",
      spec: { ...SPEC, imagePath: undefined, image: "meta:v1" },
    });
    assert.equal((r2.outcome as { code?: string }).code, "image::digest-mismatch");
    assert.equal(existsSync(join(images, other.digest.slice(7))), false);
  });

  it("SIGKILL half-way through a download leaves no image in use; the next start finishes", async () => {
    const data = join(dir, "h2");
    const info = await store.push(imageFile, { name: "crash", tag: "v1" });
    const w = new WorkerProcess(args("h2", data), { VMQ_FAILPOINTS: "mid-image-fetch@1" }).start();
    await ready("h2");
    await client.publish("h2", {
      type: "vm.prepare",
      vmId: "crash-1",
      spec: { ...SPEC, imagePath: undefined, image: "crash:v1" },
    });
    await w.ended();
    assert.deepEqual(w.failpoints, ["mid-image-fetch"]);
    const images = join(data, "images");
    const digestFile = join(images, info.digest.slice(7));
    assert.equal(existsSync(digestFile), false, "no image under its digest before it is verified");
    assert.equal((await readdir(join(images, ".partial"))).length, 1, "the partial download");

    const again = new WorkerProcess(args("h2", data)).start();
    try {
      const prepared = await eventually(
        async () => {
          const v = (await client.list()).find((x) => x.vmId === "crash-1");
          return v?.state === "prepared" ? v : undefined;
        },
        60_000,
        "crash-1 prepared after the restart",
      );
      assert.equal(prepared.handle?.imageDigest, info.digest);
      assert.equal(sha(await readFile(digestFile)), info.digest);
      assert.deepEqual(await readdir(join(images, ".partial")), []);
    } finally {
      await again.kill();
    }
  });
});
