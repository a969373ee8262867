import assert from "node:assert/strict";
import { mkdtemp, readdir, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { after, before, describe, it } from "node:test";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { VmqClient } from "../../src/client/index.js";
import { runVmq } from "../helpers/cli.js";
import { WorkerProcess } from "../helpers/worker-process.js";
import { SPEC, eventually } from "../helpers/worker-harness.js";
import { alive } from "../helpers/pids.js";

/** Every file under `dir` with its size and mtime, one line each, sorted. */
async function listing(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const name of await readdir(dir, { recursive: true })) {
    const s = await stat(join(dir, name)).catch(() => undefined);
    if (s) out.push(`${name} ${s.isDirectory() ? "dir" : s.size} ${s.mtimeMs}`);
  }
  return out.sort();
}

/** A worker on an embedded nats-server under `dir`, quiet between commands. */
const workerArgs = (dir: string): string[] => [
  ...["--host", "dl", "--data-dir", dir, "--embedded-port", "0"],
  ...["--noop-state-dir", join(dir, "noop")], // the Noop's VMs outlive a restart too
  // No periodic writes while the store is compared: heartbeat, lease renewal, snapshots,
  // compaction, reconcile.
  ...["--heartbeat-ms", "600000", "--host-ttl-ms", "1200000", "--snapshot-interval-ms", "600000"],
  ...["--lease-ttl-ms", "1200000"],
  ...["--compact-interval-ms", "600000", "--reconcile-interval-ms", "0"],
];

async function running(w: WorkerProcess): Promise<{ url: string; natsPid: number }> {
  const m = await eventually(
    () =>
      /"url":"(nats:\/\/127\.0\.0\.1:\d+)","store":"[^"]+","natsServerPid":(\d+)/.exec(w.output) ??
      undefined,
    30_000,
    "the embedded nats-server's url and pid in the log",
  );
  await eventually(() => (w.ready ? true : undefined), 30_000, "worker running");
  return { url: m[1] ?? "", natsPid: Number(m[2]) };
}

/** Runs a second worker on `dir` to its exit: exit code, stderr, wall time. */
async function second(dir: string): Promise<{ code: number | undefined; out: string; ms: number }> {
  const began = performance.now();
  const w = new WorkerProcess(workerArgs(dir)).start();
  const code = await w.exit();
  return { code, out: w.output, ms: Math.round(performance.now() - began) };
}

describe("one worker per data dir (the lock)", { timeout: 240_000 }, () => {
  let dir: string;
  let first: WorkerProcess;
  let nc: NatsConnection | undefined;
  let natsPid = 0;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "vmq-lock-"));
  });
  after(async () => {
    await nc?.close().catch(() => undefined);
    await first.kill().catch(() => undefined);
    if (natsPid && alive(natsPid)) process.kill(natsPid, "SIGKILL");
    await rm(dir, { recursive: true, force: true });
  });

  it("a second worker on the data dir exits at once, names the holder, and changes nothing in the store", async () => {
    first = new WorkerProcess(workerArgs(dir)).start();
    const up = await running(first);
    natsPid = up.natsPid;
    nc = await connect({ servers: up.url });
    const client = new VmqClient(nc, { timeoutMs: 30_000 });
    const prepared = await client.send("dl", { type: "vm.prepare", vmId: "l-1", spec: SPEC });
    assert.equal(prepared.outcome.type, "vm.prepared");
    // nats-server writes its index files a few seconds after a change: wait until the data
    // dir (the store, the ports file, the lock) holds still, so a change is the second's.
    const before = await eventually(
      async () => {
        const a = await listing(dir);
        await delay(6_000);
        const b = await listing(dir);
        return JSON.stringify(a) === JSON.stringify(b) ? b : undefined;
      },
      90_000,
      "the data dir to hold still",
    );

    const r = await second(dir);
    const began = performance.now();
    await runVmq(["worker", "--help"]); // node's own start-up and the CLI's, for comparison
    const baseline = Math.round(performance.now() - began);
    console.log(
      `second worker on a locked data dir: exit ${String(r.code)} after ${r.ms} ms (vmq worker --help: ${baseline} ms)`,
    );
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, /\[worker::data-dir-locked\]/);
    assert.match(r.out, new RegExp(`vmq worker pid ${String(first.proc?.pid)}\\b`), r.out);
    assert.doesNotMatch(r.out, /embedded nats-server started/, "no second nats-server");
    assert.ok(r.ms < 5_000, `exited in ${r.ms} ms (node's own start-up included)`);

    assert.deepEqual(await listing(dir), before, "the data dir and its store are as they were");
    // The first one still serves.
    const started = await client.send("dl", { type: "vm.start", vmId: "l-1" });
    assert.equal(started.outcome.type, "vm.started");
    await nc.close();
    nc = undefined;
  });

  it("outlives a SIGKILLed worker while its nats-server runs, and a restart after both ignores the stale lock", async () => {
    await first.kill("SIGKILL");
    assert.ok(alive(natsPid), "the embedded nats-server outlived its worker (it holds the store)");

    const r = await second(dir);
    console.log(
      `second worker beside an orphaned nats-server: exit ${String(r.code)} after ${r.ms} ms`,
    );
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, /\[worker::data-dir-locked\]/);
    assert.match(r.out, new RegExp(`nats-server pid ${natsPid}\\b`), r.out);
    assert.doesNotMatch(r.out, /embedded nats-server started/);

    process.kill(natsPid, "SIGTERM");
    await eventually(() => (alive(natsPid) ? undefined : true), 15_000, "the nats-server gone");
    natsPid = 0;

    first = new WorkerProcess(workerArgs(dir)).start();
    const up = await running(first);
    natsPid = up.natsPid;
    assert.match(first.output, /removed the data dir's stale lock/);
    nc = await connect({ servers: up.url });
    const client = new VmqClient(nc, { timeoutMs: 30_000 });
    const history = (await client.history("dl", "l-1")).map((e) => e.event.type);
    assert.ok(history.includes("vm.started"), `the store survived: ${history.join(", ")}`);
    const stopped = await client.send("dl", { type: "vm.stop", vmId: "l-1" });
    assert.equal(stopped.outcome.type, "vm.stopped");
    await nc.close();
    nc = undefined;
    await first.kill("SIGTERM");
    assert.equal(await first.exit(), 0);
    assert.ok(!alive(natsPid), "a drained worker stops its nats-server");
    natsPid = 0;
    assert.deepEqual(
      (await readdir(dir)).filter((n) => n.startsWith("vmq.lock")),
      [],
      "a clean stop leaves no lock file",
    );
  });
});
