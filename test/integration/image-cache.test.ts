/**
 * The host image cache's cap (issue 21, item 2: "a size cap with least-recently-used eviction of
 * images no VM uses"), with a real nats-server and worker processes: a cap of 2 MiB holds two
 * 1 MiB images. Across a worker restart (so only the VMs' recorded handles say what is in use,
 * not the memory of the process that fetched them), a third image evicts the one whose VM was
 * destroyed and keeps the older one a running VM uses; a fourth prepare, with every cached image
 * in use, fails image::cache-full and leaves no file.
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

describe(
  "image cache: a cap, least recently used eviction of images no VM uses",
  { timeout: 180_000 },
  () => {
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

    it("evicts the image of a destroyed VM, keeps a running VM's across a restart, and says cache-full when all are in use", async () => {
      const prefix = testPrefix();
      const data = join(dir, "h1");
      const worker = () => {
        const w = new WorkerProcess([
          ...["--nats", server.url, "--prefix", prefix, "--host", "h1", "--data-dir", data],
          ...["--noop-state-dir", join(data, "noop"), "--heartbeat-ms", "300"],
          // A retryable failure (cache-full) is recorded at the second delivery, not after ten.
          ...["--image-cache-max-mb", "2", "--max-deliver", "2", "--max-attempts", "1"],
          ...["--ack-wait-ms", "2000", "--log-level", "info"],
        ]).start();
        procs.push(w);
        return w;
      };
      const up = (w: WorkerProcess) => eventually(() => w.ready || undefined, 60_000, "worker up");
      let w = worker();
      await up(w);

      const client = new VmqClient(nc, { prefix, timeoutMs: 60_000 });
      const store = new ImageStore(nc, { prefix });
      const digests: Record<string, string> = {};
      for (const name of ["a", "b", "c"]) {
        const file = join(dir, `${prefix}-${name}.img`);
        await writeFile(file, randomBytes(MiB));
        digests[name] = (await store.push(file, { name, tag: "v1" })).digest;
      }
      const cached = async () => {
        const files = await readdir(join(data, "images"));
        const names = Object.entries(digests)
          .filter(([, d]) => files.includes(d.slice("sha256:".length)))
          .map(([n]) => n);
        return names.sort().join(",");
      };
      const prepare = (vmId: string, image: string) => {
        const { imagePath: _p, ...spec } = { ...SPEC, name: vmId, image };
        return client.prepare(vmId, spec, { host: "h1" });
      };

      // vm-a runs from a (fetched first: the least recently used), vm-b was prepared from b and
      // destroyed. The cap holds both images.
      assert.equal((await prepare("vm-a", "a:v1")).outcome.type, "vm.prepared");
      assert.equal((await client.start("vm-a", { host: "h1" })).outcome.type, "vm.started");
      assert.equal((await prepare("vm-b", "b:v1")).outcome.type, "vm.prepared");
      assert.equal((await client.destroy("vm-b", { host: "h1" })).outcome.type, "vm.destroyed");
      assert.equal(await cached(), "a,b");

      // A restart: what is in use now comes from the VMs' recorded handles alone.
      await w.stop();
      w = worker();
      await up(w);

      // c needs room: b goes (no VM uses it), a stays although it is older (vm-a runs from it).
      assert.equal((await prepare("vm-c", "c:v1")).outcome.type, "vm.prepared");
      assert.equal(await cached(), "a,c");
      assert.match(w.output, /"msg":"evicted cached image"/);

      // b again: a and c are both in use and fill the cap, so nothing may go.
      const full = await prepare("vm-d", "b:v1");
      assert.equal(full.outcome.type, "vm.command-failed");
      assert.equal(
        full.outcome.type === "vm.command-failed" && full.outcome.code,
        "image::cache-full",
      );
      assert.equal(await cached(), "a,c");
      const partial = await readdir(join(data, "images", ".partial"));
      assert.deepEqual(partial, [], "no download left behind");
    });
  },
);
