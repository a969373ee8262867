/**
 * One host id, two worker processes (different data dirs, one external nats-server, one shared
 * Noop state dir standing for the host's hypervisor): exactly one is active and the other says
 * standby (vmq hosts, /readyz); SIGKILLed under load, the active one is replaced by the standby
 * with no command lost, no effect twice, per-VM order kept and the view equal to a replay. A
 * worker stalled (SIGSTOP) past its lease cannot move a view record back once resumed.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { VmqClient } from "../../src/client/index.js";
import type { CommandType } from "../../src/contracts/index.js";
import { PLAN, tallyEffects, type Histories, type Sent } from "../helpers/chaos.js";
import { runVmq } from "../helpers/cli.js";
import { NatsServer, testPrefix } from "../helpers/nats-server.js";
import { WorkerProcess } from "../helpers/worker-process.js";
import { SPEC, eventually } from "../helpers/worker-harness.js";

const TTL_MS = 3_000;

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const a = srv.address();
  await new Promise((r) => srv.close(r));
  return typeof a === "object" && a ? a.port : 0;
}

async function readyz(port: number): Promise<{ status: number; body: { reasons?: string[] } }> {
  const r = await fetch(`http://127.0.0.1:${port}/readyz`);
  return { status: r.status, body: (await r.json()) as { reasons?: string[] } };
}

describe("host lease: one active worker per host id, a hot standby", { timeout: 300_000 }, () => {
  let server: NatsServer;
  let dir: string;
  const procs: WorkerProcess[] = [];

  before(async () => {
    server = await NatsServer.start();
    dir = await mkdtemp(join(tmpdir(), "vmq-lease-"));
  });
  after(async () => {
    for (const p of procs) {
      p.proc?.kill("SIGCONT");
      await p.kill().catch(() => undefined);
    }
    await server?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  const worker = (
    prefix: string,
    host: string,
    name: string,
    httpPort: number,
    env: Record<string, string> = {},
  ) => {
    const w = new WorkerProcess(
      [
        ...["--nats", server.url, "--prefix", prefix, "--host", host],
        ...["--data-dir", join(dir, prefix, name), "--noop-state-dir", join(dir, prefix, "noop")],
        ...["--noop-latency-ms", "10", "--ack-wait-ms", "5000", "--max-deliver", "50"],
        ...["--lease-ttl-ms", String(TTL_MS), "--heartbeat-ms", "500"],
        ...["--http", `127.0.0.1:${httpPort}`, "--log-level", "info"],
      ],
      env,
    ).start();
    procs.push(w);
    return w;
  };
  const standbyNow = (w: WorkerProcess) => w.output.includes("standby: another worker holds");
  const tookAt = (w: WorkerProcess) => w.output.includes("took this host's lease");

  it("SIGKILL of the active worker under load: the standby takes over; 0 lost, 0 duplicate effects, order kept, view = replay", async () => {
    const prefix = testPrefix();
    const nc = await server.connect();
    const client = new VmqClient(nc, { prefix, timeoutMs: 30_000 });
    try {
      const [p1, p2] = [await freePort(), await freePort()];
      const a = worker(prefix, "h1", "a", p1);
      await eventually(() => a.ready || undefined, 60_000, "a running");
      const b = worker(prefix, "h1", "b", p2);
      await eventually(() => standbyNow(b) || undefined, 60_000, "b standby");

      // Exactly one active; the other says standby in vmq hosts and /readyz.
      await eventually(
        async () => {
          const hosts = (await client.hosts()).filter((h) => h.host === "h1");
          return hosts.some((h) => h.role === "standby") && hosts.some((h) => h.role === "active")
            ? hosts
            : undefined;
        },
        15_000,
        "vmq-hosts shows the active and the standby",
      );
      const cli = await runVmq(["hosts", "--nats", server.url, "--prefix", prefix]);
      assert.match(cli.stdout, /h1\s.*active/, cli.stdout);
      assert.match(cli.stdout, /h1\s.*standby/, cli.stdout);
      assert.equal((await readyz(p1)).status, 200);
      const rb = await readyz(p2);
      assert.equal(rb.status, 503);
      assert.ok(
        rb.body.reasons?.some((r) => r.startsWith("standby")),
        JSON.stringify(rb.body),
      );

      // Load: every VM's whole plan, published up front.
      const vms = 30;
      const sent: Sent = new Map();
      for (const type of PLAN) {
        await Promise.all(
          Array.from({ length: vms }, async (_, i) => {
            const vmId = `lv-${i}`;
            const body = type === "vm.prepare" ? { type, vmId, spec: SPEC } : { type, vmId };
            const { command } = await client.publish("h1", body);
            sent.set(vmId, [...(sent.get(vmId) ?? []), { id: command.commandId, type }]);
          }),
        );
      }
      const total = vms * PLAN.length;
      const histories = async (): Promise<Histories> => {
        const out: Histories = new Map();
        for (const vmId of sent.keys()) out.set(vmId, await client.history("h1", vmId));
        return out;
      };
      const outcomes = (h: Histories) =>
        [...h.values()].reduce(
          (n, evs) =>
            n +
            evs.filter((e) => e.event.type !== "vm.command-accepted" && e.event.causationId).length,
          0,
        );
      // Kill the active one part way through.
      await eventually(
        async () => (outcomes(await histories()) >= total / 4 ? true : undefined),
        60_000,
        "a quarter done",
      );
      const killedAt = performance.now();
      await a.kill("SIGKILL");
      await eventually(() => tookAt(b) || undefined, 4 * TTL_MS + 10_000, "b took the lease");
      const takeoverMs = performance.now() - killedAt;
      await eventually(() => b.ready || undefined, 60_000, "b running");
      const readyMs = performance.now() - killedAt;
      console.log(
        `# takeover: lease taken ${Math.round(takeoverMs)} ms after the SIGKILL, worker running after ${Math.round(readyMs)} ms (lease TTL ${TTL_MS} ms)`,
      );
      assert.ok(takeoverMs < 2 * TTL_MS + 3_000, `takeover took ${takeoverMs} ms`);

      await eventually(
        async () => (outcomes(await histories()) >= total ? true : undefined),
        120_000,
        "every command has its outcome",
      );
      // Redeliveries of what the dead worker held must be harmless; then the view settles.
      await new Promise((r) => setTimeout(r, 6_000));
      await b.kill("SIGTERM");
      const t = await tallyEffects({
        noopDir: join(dir, prefix, "noop"),
        host: "h1",
        sent,
        histories: await histories(),
        client,
        reconciledMayMissLog: true,
      });
      console.log(`# ${JSON.stringify({ ...t, outcomeTypes: undefined })}`);
      assert.equal(t.lost, 0);
      assert.equal(t.duplicateOutcomes, 0);
      assert.deepEqual(t.doubleEffects, []);
      assert.deepEqual(t.missingEffects, []);
      assert.deepEqual(t.outOfOrder, []);
      assert.deepEqual(t.viewMismatches, []);
      assert.equal(t.outcomes, total);
    } finally {
      await nc.close();
    }
  });

  it("a worker stalled past its lease cannot move a view record back when it resumes", async () => {
    const prefix = testPrefix();
    const nc = await server.connect();
    const client = new VmqClient(nc, { prefix, timeoutMs: 30_000 });
    const send = async (type: CommandType, extra: object = {}) => {
      const r = await client.send("h2", { type, vmId: "s1", ...extra } as never);
      assert.ok(!r.outcome.type.startsWith("vm.command-"), JSON.stringify(r.outcome));
    };
    try {
      const [p1, p2, p3] = [await freePort(), await freePort(), await freePort()];
      const first = worker(prefix, "h2", "a", p1);
      await eventually(() => first.ready || undefined, 60_000, "first running");
      await send("vm.prepare", { spec: SPEC });
      await send("vm.start");
      await eventually(
        async () => ((await client.get("s1"))?.state === "running" ? true : undefined),
        15_000,
        "view: running",
      );
      await first.kill("SIGTERM");
      // The same worker again (same data dir: its own lease), stalling before its first view
      // write: the start-up rewrite of s1's record (running).
      const stale = worker(prefix, "h2", "a", p2, { VMQ_FAILPOINTS: "before-view-write~1" });
      await eventually(
        () => stale.output.includes("before-view-write (stalled)") || undefined,
        60_000,
        "stalled before its view write",
      );
      assert.ok(tookAt(stale), "the stalled worker had taken the lease");
      const b = worker(prefix, "h2", "b", p3);
      await eventually(() => b.ready || undefined, 4 * TTL_MS + 30_000, "standby took over");
      await send("vm.stop", { timeoutMs: 1_000 });
      const advanced = await eventually(
        async () => {
          const v = await client.get("s1");
          return v?.state === "stopped" ? v : undefined;
        },
        15_000,
        "view: stopped",
      );
      // Resume the stalled worker: its write of the old record must be refused, and it stops.
      stale.proc?.kill("SIGCONT");
      const code = await stale.exit();
      assert.equal(code, 1, "the fenced-out worker exits 1");
      assert.match(stale.output, /view write refused: the record is newer/);
      assert.match(stale.output, /lost this host's lease/);
      const now = await client.get("s1");
      assert.equal(now?.state, "stopped");
      assert.equal(now?.lastEventSeq, advanced.lastEventSeq);
      assert.equal(now?.host, "h2");
      await b.kill("SIGTERM");
    } finally {
      await nc.close();
    }
  });
});
