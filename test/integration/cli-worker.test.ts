import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { connect } from "@nats-io/transport-node";
import { VmqClient } from "../../src/client/index.js";
import { runVmq } from "../helpers/cli.js";
import { WorkerProcess } from "../helpers/worker-process.js";
import { SPEC, eventually } from "../helpers/worker-harness.js";

describe("vmq worker (the CLI, as a process)", { timeout: 180_000 }, () => {
  it("with no --nats runs on an embedded nats-server under its data dir, and drains on SIGTERM", async () => {
    const dir = await mkdtemp(join(tmpdir(), "vmq-embedded-"));
    const w = new WorkerProcess([
      "--host",
      "solo",
      "--data-dir",
      dir,
      "--embedded-port",
      "0",
      "--log-level",
      "debug", // a command's own line ("command done") is logged at debug
    ]).start();
    try {
      const url = await eventually(
        () => /"url":"(nats:\/\/127\.0\.0\.1:\d+)"/.exec(w.output)?.[1],
        20_000,
        "embedded NATS url in the log",
      );
      await eventually(
        () => (w.output.includes("worker running") ? true : undefined),
        20_000,
        "worker running",
      );
      const nc = await connect({ servers: url });
      const client = new VmqClient(nc);
      const r = await client.send("solo", { type: "vm.prepare", vmId: "e-1", spec: SPEC });
      assert.equal(r.outcome.type, "vm.prepared");
      assert.match(w.output, /"host":"solo"/, "log lines carry the host");
      // The outcome is appended before its log line is written: wait for the line.
      await eventually(
        () =>
          /"vmId":"e-1","commandId":"[^"]+".*"msg":"command done"/.test(w.output)
            ? true
            : undefined,
        10_000,
        "a log line with the vmId and commandId of the command",
      );
      await nc.close();
      await w.kill("SIGTERM");
      assert.equal(w.proc?.exitCode ?? (await w.exit()), 0);
      assert.match(w.output, /drained/);
      await assert.rejects(
        connect({ servers: url, reconnect: false, timeout: 1_000 }),
        "the embedded server stopped with the worker",
      );
    } finally {
      await w.kill();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("prints one readable line and a non-zero exit for a bad flag value", async () => {
    const r = await runVmq(["worker", "--host", "bad.host", "--concurrency", "0"]);
    assert.equal(r.exitCode, 2);
    const lines = r.stderr.split("\n").filter(Boolean);
    assert.equal(lines.length, 1, `exactly one line on stderr:\n${r.stderr}`);
    assert.match(
      lines[0] ?? "",
      /^vmq: invalid worker configuration: .*host.*concurrency.*\[config::invalid\]( — hint: .+)?$/,
    );
  });

  it("documents every flag with its environment variable in --help", async () => {
    const r = await runVmq(["worker", "--help"]);
    assert.equal(r.exitCode, 0, r.stderr);
    for (const s of [
      "--nats",
      "VMQ_NATS_URL",
      "--host",
      "--backend",
      "VMQ_BACKEND",
      "--prefix",
      "--concurrency",
      "--data-dir",
      "--creds",
      "--tls-ca",
    ]) {
      assert.ok(r.stdout.includes(s), `--help mentions ${s}`);
    }
  });
});
