/**
 * The host image cache's cap (issue 21, item 2: "a size cap with least-recently-used eviction of
 * images no VM uses"), with a real nats-server and worker processes. A cap of 2 MiB holds two
 * 1 MiB images: across a worker restart (so only what the worker recorded says what is in use,
 * not the memory of the process that fetched them), a third image evicts the one whose VM was
 * destroyed and keeps the older one a running VM uses; a fourth prepare, with every cached image
 * in use, fails image::cache-full and leaves no file. A prepare SIGKILLed after the backend made
 * the VM is resolved on restart from the backend's record, with the image its pin on disk names,
 * and that image stays in use until the VM is destroyed.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { NatsConnection } from "@nats-io/transport-node";
import { ImageStore, VmqClient } from "../../src/client/index.js";
import { NatsServer, testPrefix } from "../helpers/nats-server.js";
import { SPEC, eventually } from "../helpers/worker-harness.js";
import { WorkerProcess } from "../helpers/worker-process.js";

const MiB = 1024 * 1024;

describe("image cache: a cap, and eviction of images no VM uses", { timeout: 240_000 }, () => {
  let server: NatsServer;
  let nc: NatsConnection;
  let dir: string;
  const procs: WorkerProcess[] = [];

  before(async () => {
    server = await NatsServer.start();
    nc = await server.connect();
    dir = await mkdtemp(join(tmpdir(), "vmq-image-cache-"));
  });
  after(async () => {
    for (const p of procs) await p.kill().catch(() => undefined);
    await nc?.close();
    await server?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  /** Starts a worker of `host` under `prefix`, its image cache capped at `capMb`. */
  const workerOf =
    (prefix: string, host: string, capMb: number) =>
    (env: Record<string, string> = {}): WorkerProcess => {
      const data = join(dir, prefix, host);
      const w = new WorkerProcess(
        [
          ...["--nats", server.url, "--prefix", prefix, "--host", host, "--data-dir", data],
          ...["--noop-state-dir", join(data, "noop"), "--heartbeat-ms", "300"],
          // A retryable failure (cache-full) is recorded at the second delivery, not the tenth.
          ...["--image-cache-max-mb", String(capMb), "--max-deliver", "2", "--max-attempts", "1"],
          ...["--ack-wait-ms", "2000", "--log-level", "info"],
        ],
        env,
      ).start();
      procs.push(w);
      return w;
    };
  const up = (w: WorkerProcess) => eventually(() => w.ready || undefined, 60_000, "worker up");
  /** Pushes 1 MiB of random bytes as `<name>:v1`; returns its digest. */
  const pushed = async (prefix: string, name: string): Promise<string> => {
    const file = join(dir, `${prefix}-${name}.img`);
    await writeFile(file, randomBytes(MiB));
    return (await new ImageStore(nc, { prefix }).push(file, { name, tag: "v1" })).digest;
  };
  const specFrom = (vmId: string, image: string) => {
    const { imagePath: _p, ...spec } = { ...SPEC, name: vmId, image };
    return spec;
  };
  const failedWith = (out: { outcome: { type: string; code?: string } }) =>
    out.outcome.type === "vm.command-failed" ? out.outcome.code : out.outcome.type;

  it("evicts the image of a destroyed VM, keeps a running VM's across a restart, and says cache-full when all are in use", async () => {
    const prefix = testPrefix();
    const worker = workerOf(prefix, "h1", 2);
    let w = worker();
    await up(w);
    const client = new VmqClient(nc, { prefix, timeoutMs: 60_000 });
    const digests: Record<string, string> = {};
    for (const name of ["a", "b", "c"]) digests[name] = await pushed(prefix, name);
    const images = join(dir, prefix, "h1", "images");
    const cached = async () => {
      const files = await readdir(images);
      const names = Object.entries(digests)
        .filter(([, d]) => files.includes(d.slice("sha256:".length)))
        .map(([n]) => n);
      return names.sort().join(",");
    };
    const prepare = (vmId: string, image: string) =>
      client.prepare(vmId, specFrom(vmId, image), { host: "h1" });

    // vm-a runs from a (fetched first: the least recently used), vm-b was prepared from b and
    // destroyed. The cap holds both images.
    assert.equal((await prepare("vm-a", "a:v1")).outcome.type, "vm.prepared");
    assert.equal((await client.start("vm-a", { host: "h1" })).outcome.type, "vm.started");
    assert.equal((await prepare("vm-b", "b:v1")).outcome.type, "vm.prepared");
    assert.equal((await client.destroy("vm-b", { host: "h1" })).outcome.type, "vm.destroyed");
    assert.equal(await cached(), "a,b");

    // A restart: what is in use now comes from what the worker recorded, not its memory.
    await w.stop();
    w = worker();
    await up(w);

    // c needs room: b goes (no VM uses it), a stays although it is older (vm-a runs from it).
    assert.equal((await prepare("vm-c", "c:v1")).outcome.type, "vm.prepared");
    assert.equal(await cached(), "a,c");
    assert.match(w.output, /"msg":"evicted cached image"/);

    // b again: a and c are both in use and fill the cap, so nothing may go.
    assert.equal(failedWith(await prepare("vm-d", "b:v1")), "image::cache-full");
    assert.equal(await cached(), "a,c");
    assert.deepEqual(await readdir(join(images, ".partial")), [], "no download left behind");
  });

  it("a prepare SIGKILLed after the backend made the VM is resolved with its image, which stays in use", async () => {
    const prefix = testPrefix();
    const worker = workerOf(prefix, "h2", 1);
    const first = worker({ VMQ_FAILPOINTS: "in-backend@1" });
    await up(first);
    const client = new VmqClient(nc, { prefix, timeoutMs: 60_000 });
    const a = await pushed(prefix, "a");
    await pushed(prefix, "b");
    // The worker dies once the backend has the VM, before the prepare's outcome is recorded.
    const sent = await client.publish("h2", {
      type: "vm.prepare",
      vmId: "vm-x",
      spec: specFrom("vm-x", "a:v1"),
    });
    await first.ended();
    assert.deepEqual(first.failpoints, ["in-backend"]);
    await up(worker());
    // The restart resolves it from the backend's record, which never had the image's digest:
    // the cache's pin, kept on disk, gives it.
    const out = await client.waitForOutcome("h2", "vm-x", sent.command.commandId, {
      timeoutMs: 60_000,
    });
    assert.equal(out.outcome.type, "vm.prepared");
    assert.equal(out.outcome.type === "vm.prepared" && out.outcome.reconciled, true);
    assert.equal(out.outcome.type === "vm.prepared" && out.outcome.handle.imageDigest, a);
    // So a is in use: with the cap at one image, b cannot take its place.
    const vmY = await client.prepare("vm-y", specFrom("vm-y", "b:v1"), { host: "h2" });
    assert.equal(failedWith(vmY), "image::cache-full");
    // Destroyed, vm-x lets go of it: b fits now.
    assert.equal((await client.destroy("vm-x", { host: "h2" })).outcome.type, "vm.destroyed");
    const vmZ = await client.prepare("vm-z", specFrom("vm-z", "b:v1"), { host: "h2" });
    assert.equal(vmZ.outcome.type, "vm.prepared");
  });
});
