import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { VmqClient, type CommandBody } from "../../src/client/index.js";
import { HypervisorRouter } from "../../src/hypervisor/index.js";
import { silentLogger } from "../../src/observability/logger.js";
import { Worker } from "../../src/worker/worker.js";
import { NatsCluster } from "../helpers/nats-cluster.js";
import { testPrefix } from "../helpers/nats-server.js";
import { SPEC, eventually, testNoop } from "../helpers/worker-harness.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe(
  "fault: a 3-node NATS cluster loses the worker's node and the stream leader under load",
  { timeout: 240_000 },
  () => {
    let cluster: NatsCluster;
    let nc: NatsConnection;
    let client: VmqClient;
    let worker: Worker;
    let dir: string;
    const prefix = testPrefix();

    before(async () => {
      cluster = await NatsCluster.start();
      nc = await connect({
        servers: cluster.urls.split(","),
        maxReconnectAttempts: -1,
        reconnectTimeWait: 100,
      });
      // JetStream needs a meta leader before streams with 3 replicas can be made.
      await eventually(
        async () => (await jetstreamManager(nc)) && true,
        60_000,
        "JetStream cluster ready",
      );
      client = new VmqClient(nc, { prefix, timeoutMs: 60_000 });
      dir = await mkdtemp(join(tmpdir(), "vmq-cluster-"));
      worker = new Worker(
        {
          nats: cluster.urls,
          prefix,
          host: "cl",
          dataDir: dir,
          replicas: 3,
          reconcileIntervalMs: 0,
          ackWaitMs: 5_000,
        },
        {
          router: new HypervisorRouter([testNoop({ latencyMs: 5 })]),
          logger: silentLogger(),
        },
      );
      await eventually(
        async () => worker.start().then(() => true),
        60_000,
        "worker started on the cluster",
      );
    });
    after(async () => {
      await worker.drain().catch(() => undefined);
      await nc.close();
      await cluster.stop();
      await rm(dir, { recursive: true, force: true });
    });

    it("fails over and loses nothing", async () => {
      const jsm = await eventually(async () => jetstreamManager(nc), 60_000, "JetStream manager");
      const info = await jsm.streams.info(client.names.eventsStream);
      assert.equal(info.config.num_replicas, 3, "the worker made its streams with 3 replicas");

      const confirmed: { vmId: string; commandId: string }[] = [];
      const publish = async (body: CommandBody) => {
        const commandId = randomUUID();
        for (let i = 0; i < 300; i++) {
          try {
            await client.publish("cl", { ...body, commandId });
            confirmed.push({ vmId: body.vmId, commandId });
            return;
          } catch {
            await sleep(100);
          }
        }
        throw new Error("could not publish for 30 s");
      };
      let stop = false;
      const load = Array.from({ length: 8 }, async (_, i) => {
        const vmId = `cl-${i}`;
        await publish({ type: "vm.prepare", vmId, spec: SPEC });
        for (let n = 0; !stop; n++) {
          await publish(n % 2 === 0 ? { type: "vm.start", vmId } : { type: "vm.stop", vmId });
          await sleep(30);
        }
      });
      try {
        await sleep(2_000);
        // The node the worker is connected to...
        const workerNode = cluster.nodes.find((n) =>
          worker.natsServer?.endsWith(`:${n.server.port}`),
        );
        assert.ok(workerNode, `found the worker's node (${worker.natsServer})`);
        // Its events connection (the appends) may be on another node: that one goes down next.
        const eventsNode = cluster.nodes.find((n) =>
          worker.eventsNatsServer?.endsWith(`:${n.server.port}`),
        );
        assert.ok(eventsNode, `found the events connection's node (${worker.eventsNatsServer})`);
        for (const node of new Set([workerNode, eventsNode])) {
          await node.server.kill("SIGKILL");
          await sleep(3_000);
          await node.server.restart();
          await sleep(2_000);
        }
        // ...then the events stream's leader.
        const leader = await eventually(
          async () => (await jsm.streams.info(client.names.eventsStream)).cluster?.leader,
          60_000,
          "stream leader",
        );
        const leaderNode = cluster.nodes.find((n) => n.name === leader);
        assert.ok(leaderNode, `found the stream leader ${leader}`);
        await leaderNode.server.kill("SIGKILL");
        await sleep(3_000);
        await leaderNode.server.restart();
        await sleep(2_000);
      } finally {
        stop = true;
        await Promise.allSettled(load);
      }
      await Promise.all(load);
      assert.ok(confirmed.length > 40, `load was applied (${confirmed.length})`);

      await eventually(
        async () => {
          const outcomes = new Set<string | null>();
          for (let i = 0; i < 8; i++)
            for (const e of await client.history("cl", `cl-${i}`))
              if (e.event.type !== "vm.command-accepted") outcomes.add(e.event.causationId);
          return confirmed.every((c) => outcomes.has(c.commandId)) ? true : undefined;
        },
        120_000,
        "every confirmed command has its outcome",
      );
      for (let i = 0; i < 8; i++) {
        const h = await client.history("cl", `cl-${i}`);
        const ids = h
          .filter((e) => e.event.type !== "vm.command-accepted")
          .map((e) => e.event.causationId);
        assert.equal(new Set(ids).size, ids.length, `cl-${i}: no command has two outcomes`);
      }
      assert.equal(worker.state, "running");
    });
  },
);
