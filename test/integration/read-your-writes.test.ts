import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { execa } from "execa";
import type { NatsConnection } from "@nats-io/transport-node";
import { VmqClient } from "../../src/client/index.js";
import { ROOT } from "../helpers/cli.js";
import { NatsServer, testPrefix } from "../helpers/nats-server.js";
import { WorkerProcess } from "../helpers/worker-process.js";
import { SPEC, eventually } from "../helpers/worker-harness.js";

const RUNS = 20;

/**
 * The SDK reads its own writes: after `await prepare(...)` the VM is there, `start` without a
 * host finds it, and `get` after `start` says running, however late the `vmq-vms` view is
 * written. Against a real worker process, 20 times in a row; the compose demo script too.
 */
describe("read-your-writes SDK (a real worker process)", { timeout: 300_000 }, () => {
  let server: NatsServer;
  let worker: WorkerProcess;
  let dir: string;
  let nc: NatsConnection;
  const prefix = testPrefix();

  before(async () => {
    server = await NatsServer.start();
    dir = await mkdtemp(join(tmpdir(), "vmq-ryw-"));
    worker = new WorkerProcess([
      "--nats",
      server.url,
      "--host",
      "h1",
      "--prefix",
      prefix,
      "--data-dir",
      dir,
    ]).start();
    await eventually(() => (worker.ready ? true : undefined), 30_000, "worker running");
    nc = await server.connect();
  });
  after(async () => {
    await nc?.close();
    await worker?.kill();
    await server?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it(`prepare → get → start (no host) → get, ${RUNS} times: never undefined, never vm-unknown`, async (t) => {
    const client = new VmqClient(nc, { prefix });
    await eventually(async () => ((await client.hosts()).length ? true : undefined), 20_000);
    let ok = 0;
    for (let i = 0; i < RUNS; i++) {
      const vmId = `ryw-${i}`;
      const prepared = await client.prepare(vmId, SPEC);
      assert.equal(prepared.outcome.type, "vm.prepared");
      const seen = await client.get(vmId);
      assert.equal(seen?.state, "prepared", `run ${i}: get after prepare`);
      assert.ok(
        seen.lastEventSeq >= prepared.outcomeSeq,
        `run ${i}: the view reflects the prepare`,
      );
      const started = await client.start(vmId); // the host comes from a read of the view
      assert.equal(started.outcome.type, "vm.started", `run ${i}: start without a host`);
      assert.equal(started.host, "h1");
      const after = await client.get(vmId);
      assert.equal(after?.state, "running", `run ${i}: get after start`);
      assert.ok((await client.list()).some((v) => v.vmId === vmId && v.state === "running"));
      ok++;
    }
    assert.equal(ok, RUNS);
    const s = client.readStats;
    t.diagnostic(
      `reads: ${s.fresh} fresh at once, ${s.waited} after waiting for the view, ${s.folded} folded from events`,
    );
    assert.equal(s.fresh + s.waited + s.folded > 0, true);
  });

  it("with no wait for the view (viewWaitMs 0) the fold alone gives the same answers", async () => {
    const client = new VmqClient(nc, { prefix, viewWaitMs: 0 });
    for (let i = 0; i < 5; i++) {
      const vmId = `fold-${i}`;
      await client.prepare(vmId, SPEC, { host: "h1" });
      await client.start(vmId);
      const v = await client.get(vmId);
      assert.equal(v?.state, "running");
      assert.equal(v.host, "h1");
      assert.equal(v.pending, null);
      assert.equal(v.handle?.backend, "noop");
    }
    // A later read, once the view has caught up, is the same record (no fold needed).
    const folded = await client.get("fold-4");
    const stored = await eventually(async () => {
      const v = await new VmqClient(nc, { prefix }).get("fold-4", { atLeastSeq: 0 });
      return v && v.lastEventSeq === folded?.lastEventSeq ? v : undefined;
    });
    assert.deepEqual({ ...stored, updatedAt: "" }, { ...folded, updatedAt: "" });
  });

  it(`the compose demo script passes ${RUNS} runs in ${RUNS}`, async (t) => {
    let passed = 0;
    for (let i = 0; i < RUNS; i++) {
      const r = await execa(process.execPath, [join(ROOT, "scripts", "demo-scheduler.mjs")], {
        reject: false,
        cwd: ROOT,
        env: { VMQ_NATS_URL: server.url, VMQ_PREFIX: prefix, DEMO_IMAGE: "/images/base.qcow2" },
        timeout: 60_000,
      });
      assert.equal(r.exitCode, 0, `run ${i}: ${r.stderr}\n${r.stdout}`);
      const types = r.stdout.split("\n").map((l) => l.split(/\s+/)[0] ?? "");
      assert.deepEqual(
        types.filter((w) => w.startsWith("vm.")),
        ["vm.prepared", "vm.started", "vm.suspended", "vm.resumed", "vm.stopped", "vm.destroyed"],
        r.stdout,
      );
      passed++;
    }
    t.diagnostic(`demo script: ${passed}/${RUNS} passed`);
  });
});
