import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { NatsConnection } from "@nats-io/transport-node";
import { VmqClient } from "../../src/client/index.js";
import { runVmq } from "../helpers/cli.js";
import { NatsServer, testPrefix } from "../helpers/nats-server.js";
import { WorkerProcess } from "../helpers/worker-process.js";
import { SPEC, eventually } from "../helpers/worker-harness.js";

/**
 * vmq cancel / SDK cancel against real worker processes: a queued command is rejected with
 * command::cancelled and has no effect; a finished one is said to be finished; an unknown one
 * is unknown; a cancel racing its command either cancels it or it runs, never both, never lost.
 */
describe("cancel a queued command (real worker processes)", { timeout: 300_000 }, () => {
  let server: NatsServer;
  let worker: WorkerProcess | undefined;
  let dir: string;
  let nc: NatsConnection;
  let client: VmqClient;
  const prefix = testPrefix();
  const vmq = (args: string[]) =>
    runVmq(args, { env: { VMQ_NATS_URL: server.url, VMQ_PREFIX: prefix } });

  const startWorker = async () => {
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
    const w = worker;
    await eventually(() => (w.ready ? true : undefined), 30_000, "worker running");
  };
  const outcomesOf = async (vmId: string, commandId: string) =>
    (await client.history("h1", vmId))
      .map((r) => r.event)
      .filter((e) => e.causationId === commandId && e.type !== "vm.command-accepted");

  before(async () => {
    server = await NatsServer.start();
    dir = await mkdtemp(join(tmpdir(), "vmq-cancel-"));
    await startWorker();
    nc = await server.connect();
    client = new VmqClient(nc, { prefix, timeoutMs: 20_000 });
  });
  after(async () => {
    await nc?.close();
    await worker?.kill();
    await server?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("a command queued for a stopped worker, cancelled, is rejected with command::cancelled when the worker starts, with no effect", async () => {
    const prepared = await client.prepare("c1", SPEC, { host: "h1" });
    await worker?.kill("SIGTERM");
    const { command } = await client.publish("h1", { type: "vm.start", vmId: "c1" });

    // The worker is down: the cancel is recorded, the command has no outcome yet (exit 4).
    const pending = await vmq(["cancel", command.commandId, "--timeout-ms", "1000"]);
    assert.equal(pending.exitCode, 4, pending.stderr);
    assert.match(pending.stderr, /client::cancel-pending/);

    await startWorker();
    const [outcome] = await eventually(async () => {
      const o = await outcomesOf("c1", command.commandId);
      return o.length ? o : undefined;
    }, 30_000);
    assert.equal(outcome?.type, "vm.command-rejected");
    assert.equal(outcome.type === "vm.command-rejected" && outcome.code, "command::cancelled");
    // No effect: the backend never started it, and the VM is as it was.
    const live = await client.query("h1", "c1", "state");
    assert.equal(live.ok && live.state, "prepared");
    assert.equal((await client.get("c1"))?.state, "prepared");

    // Asking again says it is cancelled (exit 0), from its outcome.
    const again = await vmq(["cancel", command.commandId]);
    assert.equal(again.exitCode, 0, again.stderr);
    assert.match(again.stdout, /cancelled: rejected with command::cancelled/);

    // A finished command: said so, with its outcome (exit 1, client::cancel-too-late).
    const done = await vmq(["cancel", prepared.commandId]);
    assert.equal(done.exitCode, 1, done.stderr);
    assert.match(
      done.stderr,
      /already accepted by its worker.*not cancelled; its outcome: vm\.prepared, now prepared.*\[client::cancel-too-late\]/,
    );

    // An unknown commandId: said so.
    const unknown = await vmq(["cancel", randomUUID()]);
    assert.equal(unknown.exitCode, 1, unknown.stderr);
    assert.match(unknown.stderr, /client::command-unknown/);
  });

  it("the SDK's cancel waits for the outcome: a cancel made while the worker is down reports cancelled once it is back", async () => {
    await client.prepare("c2", SPEC, { host: "h1" });
    await worker?.kill("SIGTERM");
    const { command } = await client.publish("h1", { type: "vm.start", vmId: "c2" });
    const cancelling = client.cancel(command.commandId, { timeoutMs: 30_000 });
    // Only once the cancel is stored may the worker come back (its watcher loads it first).
    await eventually(async () => {
      const info = await (
        await (await import("@nats-io/jetstream")).jetstreamManager(nc)
      ).streams.info(`KV_${client.names.cancelsBucket}`);
      return info.state.messages >= 2 ? true : undefined;
    });
    await startWorker();
    const r = await cancelling;
    assert.equal(r.result, "cancelled");
    assert.equal(r.vmId, "c2");
    assert.equal(r.host, "h1");
    assert.equal((await client.get("c2"))?.state, "prepared");
  });

  it("a cancel racing its command: cancelled or ran, never both, never lost (20 races)", async (t) => {
    const tally = { cancelled: 0, ran: 0 };
    for (let i = 0; i < 20; i++) {
      const vmId = `race-${i}`;
      await client.prepare(vmId, SPEC, { host: "h1" });
      const commandId = randomUUID();
      // The cancel is written first (by 0-50 ms) or the command is published first: every
      // interleaving near the worker's decision is tried.
      const gap = [0, 5, 10, 20, 50][i % 5] ?? 0;
      const publish = () =>
        client.publish("h1", { type: "vm.start", vmId, commandId }).then(() => undefined);
      const cancel = () => client.cancel(commandId, { host: "h1", vmId, timeoutMs: 20_000 });
      const later = <T>(f: () => Promise<T>) => sleep(gap).then(f);
      const [r] =
        i % 2 === 0
          ? await Promise.all([cancel(), later(publish)])
          : await Promise.all([later(cancel), publish()]);
      const outcomes = await outcomesOf(vmId, commandId);
      assert.equal(outcomes.length, 1, `race ${i}: exactly one outcome`);
      const [o] = outcomes;
      const history = (await client.history("h1", vmId)).map((e) => e.event.type);
      if (o?.type === "vm.command-rejected" && o.code === "command::cancelled") {
        assert.equal(r?.result, "cancelled", `race ${i}`);
        assert.ok(!history.includes("vm.started"), `race ${i}: cancelled, so not started`);
        assert.equal((await client.get(vmId))?.state, "prepared");
        tally.cancelled++;
      } else {
        assert.equal(o?.type, "vm.started", `race ${i}: ${JSON.stringify(o)}`);
        assert.equal(r?.result, "accepted", `race ${i}`);
        assert.equal((await client.get(vmId))?.state, "running");
        tally.ran++;
      }
    }
    t.diagnostic(`races: ${tally.cancelled} cancelled, ${tally.ran} ran`);
    assert.equal(tally.cancelled + tally.ran, 20);
  });
});
