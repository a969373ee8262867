import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { jetstream, jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { VmqClient } from "../../src/client/index.js";
import {
  commandVmToken,
  names as namesFor,
  parseCommand,
  type Names,
} from "../../src/contracts/index.js";
import { ensureConsumer, ensureTopology } from "../../src/event-store/provision.js";
import { commandReaderName } from "../../src/contracts/permissions.js";
import { jetStreamCommandLog } from "../../src/worker/nats/command-log.js";
import { CommandReader } from "../../src/worker/nats/command-reader.js";
import { OrderGate } from "../../src/worker/pipeline/order-gate.js";
import { NatsServer, testPrefix } from "../helpers/nats-server.js";
import { SPEC } from "../helpers/worker-harness.js";

const parse = (data: Uint8Array, subject: string) => {
  const p = parseCommand(data, commandVmToken(subject));
  return p.ok ? p.command : undefined;
};

describe("order gate against a real consumer", { timeout: 60_000 }, () => {
  let server: NatsServer;
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  let names: Names;
  let client: VmqClient;
  let durable: string;
  /** The host's own reader consumer, as the worker reads its earlier commands. */
  const reader = (host: string) =>
    new CommandReader(jetstream(nc), jsm, names.commandsStream, commandReaderName(host));

  before(async () => {
    server = await NatsServer.start();
    nc = await server.connect();
    jsm = await jetstreamManager(nc);
    const prefix = testPrefix();
    names = namesFor(prefix);
    await ensureTopology(nc, jsm, names);
    durable = await ensureConsumer(jsm, names, "g1", {
      ackWaitMs: 60_000,
      maxDeliver: 10,
      maxAckPending: 100,
    });
    client = new VmqClient(nc, { prefix, timeoutMs: 5_000 });
  });
  after(async () => {
    await nc.close();
    await server.stop();
  });

  it("finds what a dead worker held for the same VM, skips what has an outcome or is bad input, and closes once acked", async () => {
    const consumer = await jetstream(nc).consumers.get(names.commandsStream, durable);
    const prepare = await client.publish("g1", { type: "vm.prepare", vmId: "a", spec: SPEC });
    const other = await client.publish("g1", { type: "vm.prepare", vmId: "b", spec: SPEC });
    const done = await client.publish("g1", { type: "vm.start", vmId: "a" });
    await jetstream(nc).publish(`${names.prefix}.cmd.g1.a`, "not json");
    // The "dead worker": takes all four and acks none.
    const held = [];
    for await (const m of await consumer.fetch({ max_messages: 4, expires: 2_000 })) {
      held.push(m);
      if (held.length === 4) break;
    }
    assert.equal(held.length, 4);

    const gate = new OrderGate(
      jetStreamCommandLog(jsm, names.commandsStream, durable, reader("g1")),
      parse,
      600_000,
    );
    const window = await gate.open();
    assert.deepEqual(window, { from: prepare.seq, to: held.at(-1)?.seq });

    const later = await client.publish("g1", { type: "vm.stop", vmId: "a", timeoutMs: 1000 });
    const subject = `${names.prefix}.cmd.g1.a`;
    const seen = new Set([done.command.commandId]);
    const earlier = await gate.earlier("a", subject, later.seq, seen);
    assert.deepEqual(
      earlier.map((e) => [e.kind, e.seq, e.command.commandId]),
      [["held", prepare.seq, prepare.command.commandId]],
      "only VM a's prepare: b is another VM, the start has an outcome, bad input never waits",
    );
    assert.equal(gate.firstTry(prepare.seq), true, "a held command may run ahead once");
    assert.equal(gate.firstTry(prepare.seq), false, "then it waits for its own redelivery");
    // With the prepare's outcome recorded, nothing is in the way.
    seen.add(prepare.command.commandId);
    assert.deepEqual(await gate.earlier("a", subject, later.seq, seen), []);
    // VM b's first command here finds b's own prepare.
    const bStart = await client.publish("g1", { type: "vm.start", vmId: "b" });
    const forB = await gate.earlier("b", `${names.prefix}.cmd.g1.b`, bStart.seq, new Set());
    assert.deepEqual(
      forB.map((e) => e.command.commandId),
      [other.command.commandId],
    );

    // Once everything held is acked the window closes and no more lookups happen.
    for (const m of held) m.ack();
    await nc.flush();
    await new Promise((r) => setTimeout(r, 2_100));
    assert.deepEqual(
      await gate.earlier("b", `${names.prefix}.cmd.g1.b`, bStart.seq, new Set()),
      [],
    );
    assert.equal(gate.windowOpen, false);
  });

  it("makes a VM's later commands wait for one this process sent back, until it has an outcome", async () => {
    const gate = new OrderGate(
      jetStreamCommandLog(jsm, names.commandsStream, durable, reader("g1")),
      parse,
      600_000,
    );
    assert.equal(await gate.open(), undefined, "nothing held: no window");
    const first = await client.publish("g1", { type: "vm.prepare", vmId: "c", spec: SPEC });
    const second = await client.publish("g1", { type: "vm.start", vmId: "c" });
    const subject = `${names.prefix}.cmd.g1.c`;
    gate.defer({
      seq: first.seq,
      subject,
      data: new TextEncoder().encode(JSON.stringify(first.command)),
      command: first.command,
    });
    const waiting = await gate.earlier("c", subject, second.seq, new Set());
    assert.deepEqual(
      waiting.map((e) => [e.kind, e.seq]),
      [["deferred", first.seq]],
    );
    assert.deepEqual(await gate.earlier("c", subject, first.seq, new Set()), [], "not itself");
    assert.deepEqual(
      await gate.earlier("c", subject, second.seq, new Set([first.command.commandId])),
      [],
    );
    // A command dead-lettered without an outcome is forgotten: nothing waits for it.
    gate.defer({ seq: first.seq, subject, data: new Uint8Array(), command: first.command });
    assert.equal(gate.waiting, 1);
    gate.forget("c", first.seq);
    assert.deepEqual(await gate.earlier("c", subject, second.seq, new Set()), []);
    assert.equal(gate.waiting, 0);
    assert.equal(gate.mayHaveEarlier("c"), false, "the VM is off the slow path again");
  });

  it("closes a window whose ack floor never moves once every held message had its redeliveries", async () => {
    const g2 = await ensureConsumer(jsm, names, "g2", {
      ackWaitMs: 60_000,
      maxDeliver: 10,
      maxAckPending: 100,
    });
    const consumer = await jetstream(nc).consumers.get(names.commandsStream, g2);
    const stuck = await client.publish("g2", { type: "vm.prepare", vmId: "d", spec: SPEC });
    const m = await consumer.next({ expires: 2_000 });
    assert.equal(m?.seq, stuck.seq, "held, never acked");
    const gate = new OrderGate(
      jetStreamCommandLog(jsm, names.commandsStream, g2, reader("g2")),
      parse,
      1,
    );
    assert.ok(await gate.open());
    await new Promise((r) => setTimeout(r, 2_100));
    const later = await client.publish("g2", { type: "vm.start", vmId: "d" });
    assert.deepEqual(await gate.earlier("d", `${names.prefix}.cmd.g2.d`, later.seq, new Set()), []);
    assert.equal(gate.windowOpen, false);
  });
});
