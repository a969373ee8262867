import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { VmqClient } from "../../src/client/index.js";
import { NatsServer, testPrefix } from "../helpers/nats-server.js";
import { WorkerProcess } from "../helpers/worker-process.js";
import { SPEC, eventually } from "../helpers/worker-harness.js";
import { alive } from "../helpers/pids.js";

/** A listening TCP server on a free loopback port (a port that is taken). */
async function occupy(): Promise<{ server: Server; port: number }> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const a = server.address();
  return { server, port: typeof a === "object" && a ? a.port : 0 };
}

/** A loopback port nothing listens on (it was free a moment ago). */
async function freePort(): Promise<number> {
  const { server, port } = await occupy();
  await new Promise((r) => server.close(r));
  return port;
}

async function readyz(port: number): Promise<{ status: number; body: string }> {
  const r = await fetch(`http://127.0.0.1:${port}/readyz`);
  return { status: r.status, body: await r.text() };
}

describe("worker start-up: waiting for NATS, failing cleanly", { timeout: 240_000 }, () => {
  let dir: string;
  const workers: WorkerProcess[] = [];
  const start = (args: string[], name: string): WorkerProcess => {
    const w = new WorkerProcess([...args, "--data-dir", join(dir, name)]).start();
    workers.push(w);
    return w;
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "vmq-start-"));
  });
  after(async () => {
    for (const w of workers) await w.kill().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  });

  it("waits for an unreachable NATS, says so in /readyz, and serves once NATS is up", async () => {
    const port = await freePort();
    const prefix = testPrefix();
    const w = start(
      [
        ...["--nats", `nats://127.0.0.1:${port}`, "--prefix", prefix, "--host", "wt"],
        ...["--http", "127.0.0.1:0"],
      ],
      "wait",
    );
    const http = Number(
      await eventually(
        () => /"port":(\d+),"msg":"serving \/metrics/.exec(w.output)?.[1],
        20_000,
        "the HTTP port in the log",
      ),
    );
    const waiting = await eventually(
      async () => {
        const r = await readyz(http);
        return r.body.includes("waiting-for-nats") ? r : undefined;
      },
      20_000,
      "/readyz to say it waits for NATS",
    );
    assert.equal(waiting.status, 503);
    await eventually(
      () => (w.output.includes("waiting for NATS") ? true : undefined),
      10_000,
      "a log line saying it waits",
    );
    assert.ok(!w.dead, "it did not exit");

    const server = await NatsServer.start({ port });
    try {
      await eventually(() => (w.ready ? true : undefined), 30_000, "worker running");
      assert.equal((await readyz(http)).status, 200);
      const nc = await server.connect();
      const client = new VmqClient(nc, { prefix, timeoutMs: 30_000 });
      const r = await client.send("wt", { type: "vm.prepare", vmId: "w-1", spec: SPEC });
      assert.equal(r.outcome.type, "vm.prepared");
      await nc.close();
      await w.kill("SIGTERM");
      assert.equal(await w.exit(), 0);
    } finally {
      await w.kill();
      await server.stop();
    }
  });

  it("gives up after --nats-wait-ms with a coded error, and a stop while waiting exits at once", async () => {
    const port = await freePort();
    const nats = ["--nats", `nats://127.0.0.1:${port}`, "--host", "wb"];
    const bounded = start([...nats, "--nats-wait-ms", "1500"], "bounded");
    const began = performance.now();
    const code = await bounded.exit();
    const ms = Math.round(performance.now() - began);
    console.log(`--nats-wait-ms 1500: exit ${String(code)} after ${ms} ms`);
    assert.equal(code, 1, bounded.output);
    assert.match(bounded.output, /gave up waiting for NATS .*\[nats::unreachable\]/);
    assert.ok(ms < 20_000, `exited in ${ms} ms`);

    const unbounded = start(nats, "unbounded");
    await eventually(
      () => (unbounded.output.includes("waiting for NATS") ? true : undefined),
      20_000,
      "waiting",
    );
    const stopAt = performance.now();
    await unbounded.kill("SIGTERM");
    assert.equal(await unbounded.exit(), 0, unbounded.output);
    assert.ok(performance.now() - stopAt < 5_000, "one signal ends the wait");
  });

  it("exits non-zero at once when --http is taken, and starts no nats-server", async () => {
    const taken = await occupy();
    try {
      const w = start(
        ["--host", "wh", "--embedded-port", "0", "--http", `127.0.0.1:${taken.port}`],
        "http",
      );
      const began = performance.now();
      const code = await w.exit();
      const ms = Math.round(performance.now() - began);
      console.log(`--http on a taken port: exit ${String(code)} after ${ms} ms`);
      assert.equal(code, 1, w.output);
      assert.match(w.output, /\[worker::http-unavailable\]/);
      assert.doesNotMatch(w.output, /embedded nats-server started/, "HTTP comes before NATS");
      assert.ok(ms < 10_000, `exited in ${ms} ms`);
    } finally {
      await new Promise((r) => taken.server.close(r));
    }
  });

  it("a start-up failure after the embedded nats-server started stops it and exits", async () => {
    // An unreadable credentials file fails the connect, after the embedded server is up.
    const w = start(
      ["--host", "wf", "--embedded-port", "0", "--creds", join(dir, "no-such.creds")],
      "creds",
    );
    const code = await w.exit();
    assert.equal(code, 2, w.output); // a configuration error
    assert.match(w.output, /\[config::unreadable-file\]/);
    const pid = Number(/"natsServerPid":(\d+)/.exec(w.output)?.[1]);
    assert.ok(pid > 0, `the embedded nats-server had started:\n${w.output}`);
    assert.ok(!alive(pid), "no nats-server left behind");
  });
});
