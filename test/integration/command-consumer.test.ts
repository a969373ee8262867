import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { jetstream, jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { names as namesFor, type Names } from "../../src/contracts/index.js";
import { ensureConsumer, ensureTopology } from "../../src/event-store/provision.js";
import { silentLogger } from "../../src/observability/logger.js";
import { CommandConsumer } from "../../src/worker/consumer/command-consumer.js";
import { Lanes } from "../../src/worker/consumer/lanes.js";
import {
  ACK,
  nak,
  type CommandMessage,
  type Settlement,
} from "../../src/worker/pipeline/settlement.js";
import { NatsServer, testPrefix } from "../helpers/nats-server.js";
import { eventually } from "../helpers/worker-harness.js";

const MAX_DELIVER = 2;

describe("command consumer", { timeout: 60_000 }, () => {
  let server: NatsServer;
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  let names: Names;
  before(async () => {
    server = await NatsServer.start();
    nc = await server.connect();
    jsm = await jetstreamManager(nc);
    names = namesFor(testPrefix());
    await ensureTopology(nc, jsm, names);
  });
  after(async () => {
    await nc.close();
    await server.stop();
  });

  const opts = { ackWaitMs: 30_000, maxDeliver: MAX_DELIVER, maxAckPending: 100 };

  /** The host's consumer with a stand-in handler; `beforeRecreate` runs as recreating begins. */
  function consumerFor(
    host: string,
    handler: { handle: (m: CommandMessage) => Promise<Settlement> },
    beforeRecreate: (startSeq: number | undefined) => Promise<void> | void,
  ): CommandConsumer {
    return new CommandConsumer(
      jetstream(nc),
      names.commandsStream,
      names.durable(host),
      new Lanes(4),
      handler,
      silentLogger(),
      {
        ...opts,
        batch: 16,
        recreate: async (startSeq) => {
          await beforeRecreate(startSeq);
          await ensureConsumer(jsm, names, host, { ...opts, startSeq });
        },
      },
    );
  }

  it("keeps a command nak'd on its last delivery for a recreated durable until JetStream gives it up", async () => {
    await ensureConsumer(jsm, names, "h1", opts);
    const js = jetstream(nc);
    const naked = await js.publish(names.cmd("h1", "vm-a"), new TextEncoder().encode("{}"));
    const acked = await js.publish(names.cmd("h1", "vm-b"), new TextEncoder().encode("{}"));
    const deliveries: number[] = [];
    let ackedB = 0;
    // The consumer's bookkeeping is under test, so this handler only naks vm-a (on every
    // delivery, the last included) and acks vm-b.
    const handler = {
      handle: (m: CommandMessage): Promise<Settlement> => {
        if (m.seq === naked.seq) {
          deliveries.push(m.info.deliveryCount);
          return Promise.resolve(nak(0));
        }
        ackedB++;
        return Promise.resolve(ACK);
      },
    };
    const restarts: (number | undefined)[] = [];
    const consumer = consumerFor("h1", handler, (startSeq) => {
      restarts.push(startSeq);
    });
    await consumer.start();
    try {
      await eventually(() =>
        deliveries.length === MAX_DELIVER && ackedB === 1 ? true : undefined,
      );
      // The durable goes away after the last delivery's nak. A nak with a delay is given up
      // only once the delay is over, so until JetStream says so the command must come back.
      await jsm.consumers.delete(names.commandsStream, names.durable("h1"));
      await eventually(() => (restarts.length === 1 ? true : undefined), 15_000, "recreated");
      assert.equal(
        restarts[0],
        naked.seq,
        "the new durable starts at the command with no word yet",
      );
      await eventually(() => (deliveries.length === 2 * MAX_DELIVER ? true : undefined));
      assert.deepEqual(deliveries, [1, 2, 1, 2], "delivered again by the new durable");
      await eventually(() => (ackedB === 2 ? true : undefined));
      // JetStream's MAX_DELIVERIES advisory, as the DLQ mover passes it on once handled.
      consumer.givenUp(naked.seq);
      await jsm.consumers.delete(names.commandsStream, names.durable("h1"));
      await eventually(() => (restarts.length === 2 ? true : undefined), 15_000, "recreated");
      assert.equal(
        restarts[1],
        acked.seq + 1,
        `restarted at ${restarts[1]}: after the last command seen, not at the given-up ${naked.seq}`,
      );
    } finally {
      await consumer.stop();
    }
  });

  it("stops for good when stop() comes while the durable is being recreated", async () => {
    await ensureConsumer(jsm, names, "h2", opts);
    const js = jetstream(nc);
    const handled: number[] = [];
    const handler = {
      handle: (m: CommandMessage): Promise<Settlement> => {
        handled.push(m.seq);
        return Promise.resolve(ACK);
      },
    };
    let recreating!: () => void;
    const inRecreate = new Promise<void>((r) => (recreating = r));
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    const consumer = consumerFor("h2", handler, async () => {
      recreating();
      await released; // the restart is under way when stop() comes
    });
    await consumer.start();
    await jsm.consumers.delete(names.commandsStream, names.durable("h2"));
    await inRecreate;
    const stopped = consumer.stop();
    release();
    let timer: NodeJS.Timeout | undefined;
    const outcome = await Promise.race([
      stopped.then(() => "stopped"),
      new Promise((r) => (timer = setTimeout(() => r("still consuming after 20 s"), 20_000))),
    ]);
    clearTimeout(timer);
    assert.equal(outcome, "stopped");
    assert.equal(consumer.running, false);
    // Nothing is pulled after the stop: a command published now is left for the next worker.
    await js.publish(names.cmd("h2", "vm-c"), new TextEncoder().encode("{}"));
    await new Promise((r) => setTimeout(r, 500));
    assert.deepEqual(handled, []);
  });
});
