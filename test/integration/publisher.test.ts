import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import {
  JetStreamApiCodes,
  JetStreamApiError,
  jetstreamManager,
  type JetStreamManager,
} from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { JetStreamPublisher } from "../../src/event-store/publisher.js";
import { isVmqError } from "../../src/lib/errors.js";
import { NatsServer } from "../helpers/nats-server.js";

const data = (s: string): Uint8Array => new TextEncoder().encode(s);

describe("JetStreamPublisher (the worker's batched JetStream publishes)", () => {
  let server: NatsServer;
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  let pub: JetStreamPublisher;
  before(async () => {
    server = await NatsServer.start();
    nc = await server.connect();
    jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: "PT", subjects: ["pt.>"] });
    pub = new JetStreamPublisher(nc, "_INBOX_pt", 2_000);
  });
  after(async () => {
    pub.close();
    await nc.close();
    await server.stop();
  });

  it("resolves with the PubAck; a repeated msgId is a duplicate with the first sequence", async () => {
    const a = await pub.publish("pt.a", data("one"), { msgId: "m-1" });
    assert.equal(a.stream, "PT");
    assert.ok(a.seq > 0);
    assert.equal(a.duplicate, false);
    const again = await pub.publish("pt.a", data("one"), { msgId: "m-1" });
    assert.deepEqual(again, { stream: "PT", seq: a.seq, duplicate: true });
    const stored = await jsm.streams.getMessage("PT", { seq: a.seq });
    assert.equal(stored?.string(), "one");
    assert.equal(stored?.header.get("Nats-Msg-Id"), "m-1");
  });

  it("a wrong expected last subject sequence is nats.js's JetStreamApiError, and stores nothing", async () => {
    const first = await pub.publish("pt.seq", data("x"), { expectedLastSubjectSeq: 0 });
    const before = (await jsm.streams.info("PT")).state.messages;
    await assert.rejects(
      pub.publish("pt.seq", data("y"), { expectedLastSubjectSeq: first.seq - 1 }),
      (e: unknown) =>
        e instanceof JetStreamApiError && e.code === JetStreamApiCodes.StreamWrongLastSequence,
    );
    assert.equal((await jsm.streams.info("PT")).state.messages, before);
    const next = await pub.publish("pt.seq", data("z"), { expectedLastSubjectSeq: first.seq });
    assert.ok(next.seq > first.seq);
  });

  it("a subject no stream takes fails at once with a retryable nats::no-responders", async () => {
    await assert.rejects(
      pub.publish("nowhere.x", data("x")),
      (e: unknown) => isVmqError(e, "nats::no-responders") && e.retryable,
    );
  });

  it("no PubAck in time is a retryable nats::timeout", async () => {
    // Someone listens (so no 503) but never answers.
    const mute = nc.subscribe("mute.>", { callback: () => undefined });
    const t0 = Date.now();
    await assert.rejects(
      pub.publish("mute.x", data("x"), { timeoutMs: 300 }),
      (e: unknown) => isVmqError(e, "nats::timeout") && e.retryable,
    );
    assert.ok(Date.now() - t0 >= 300, "not before its timeout");
    mute.unsubscribe();
  });

  it("publishes and later() sends of one turn go out in the order they were made", async () => {
    const seen: string[] = [];
    const sub = nc.subscribe("order.>", {
      callback: (_e, m) => {
        seen.push(`${m.subject.slice(6)}:${m.string()}`);
      },
    });
    await nc.flush();
    await jsm.streams.add({ name: "PO", subjects: ["order.js"] });
    const one = pub.publish("order.js", data("1"));
    pub.later(() => nc.publish("order.core", "2"));
    const three = pub.publish("order.js", data("3"));
    pub.later(() => nc.publish("order.core", "4"));
    assert.deepEqual(seen, [], "nothing is sent before the turn ends");
    await pub.flushed();
    const [a, b] = await Promise.all([one, three]);
    assert.ok(b.seq > a.seq);
    await nc.flush();
    assert.deepEqual(seen, ["js:1", "core:2", "js:3", "core:4"]);
    sub.unsubscribe();
  });

  it("close() rejects what still waits for its PubAck", async () => {
    const mute = nc.subscribe("hold.>", { callback: () => undefined });
    const p2 = new JetStreamPublisher(nc, "_INBOX_pt2", 60_000);
    const waiting = p2.publish("hold.x", data("x"));
    await p2.flushed();
    p2.close();
    await assert.rejects(waiting, (e: unknown) => isVmqError(e, "nats::closed"));
    mute.unsubscribe();
  });
});
