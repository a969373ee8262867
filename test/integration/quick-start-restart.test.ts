import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { runVmq } from "../helpers/cli.js";
import { WorkerProcess } from "../helpers/worker-process.js";
import { eventually } from "../helpers/worker-harness.js";

/** The quick start's worker: `vmq worker` with no --nats and no backend flags (Noop). */
function quickStartWorker(dir: string): WorkerProcess {
  return new WorkerProcess([
    "--host",
    "qs",
    "--data-dir",
    dir,
    "--embedded-port",
    "0",
    "--reconcile-interval-ms",
    "500",
  ]).start();
}

async function running(w: WorkerProcess): Promise<string> {
  const url = await eventually(
    () => [...w.output.matchAll(/"url":"(nats:\/\/127\.0\.0\.1:\d+)"/g)].at(-1)?.[1],
    20_000,
    "embedded NATS url in the log",
  );
  await eventually(
    () => (w.output.includes("worker running") ? true : undefined),
    20_000,
    "worker running",
  );
  return url;
}

describe("the quick start keeps its VMs across a worker restart", { timeout: 180_000 }, () => {
  it("a VM started before a restart is still running after it (Noop state under the data dir)", async () => {
    const dir = await mkdtemp(join(tmpdir(), "vmq-quick-"));
    let w = quickStartWorker(dir);
    try {
      const env = { VMQ_NATS_URL: await running(w) };
      const vmq = (args: string[]) => runVmq(args, { env });
      const prep = await vmq(["prepare", "demo", "--image", "/images/base.qcow2"]);
      assert.equal(prep.exitCode, 0, prep.stderr);
      const start = await vmq(["start", "demo"]);
      assert.equal(start.exitCode, 0, start.stderr);

      await w.kill("SIGTERM");
      assert.equal(w.proc?.exitCode ?? (await w.exit()), 0);
      w = quickStartWorker(dir);
      const env2 = { VMQ_NATS_URL: await running(w) };
      // Several reconcile rounds pass; the VM must not be recorded gone.
      await new Promise((r) => setTimeout(r, 2_000));
      const get = await runVmq(["get", "demo", "--json"], { env: env2 });
      assert.equal(get.exitCode, 0, get.stderr);
      assert.equal((JSON.parse(get.stdout) as { state: string }).state, "running");
      const events = await runVmq(["events", "demo"], { env: env2 });
      assert.doesNotMatch(events.stdout, /vm\.destroyed|vm\.stopped/);
      const stop = await runVmq(["stop", "demo"], { env: env2 });
      assert.equal(stop.exitCode, 0, stop.stderr);
    } finally {
      await w.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("--noop-ephemeral keeps VMs in memory only: after a restart the VM is recorded gone", async () => {
    const dir = await mkdtemp(join(tmpdir(), "vmq-quick-eph-"));
    const args = ["--host", "qe", "--data-dir", dir, "--embedded-port", "0", "--noop-ephemeral"];
    let w = new WorkerProcess([...args, "--reconcile-interval-ms", "500"]).start();
    try {
      const env = { VMQ_NATS_URL: await running(w) };
      const prep = await runVmq(["prepare", "eph", "--image", "/images/base.qcow2"], { env });
      assert.equal(prep.exitCode, 0, prep.stderr);
      await w.kill("SIGTERM");
      await w.exit();
      w = new WorkerProcess([...args, "--reconcile-interval-ms", "500"]).start();
      const env2 = { VMQ_NATS_URL: await running(w) };
      await eventually(
        async () => {
          const g = await runVmq(["get", "eph", "--json"], { env: env2 });
          return (JSON.parse(g.stdout || "{}") as { state?: string }).state === "destroyed"
            ? true
            : undefined;
        },
        30_000,
        "the ephemeral VM recorded destroyed after the restart",
      );
    } finally {
      await w.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
