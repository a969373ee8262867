import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { describe, it } from "node:test";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { NatsServer, locateNatsServer } from "../helpers/nats-server.js";

describe("test helper: private nats-server", () => {
  it("says how to install nats-server when none of the candidates runs", async () => {
    await assert.rejects(
      locateNatsServer([undefined, "/nonexistent/nats-server", "/bin/false"]),
      /nats-server is not installed: run \.\/setup\.sh .*NATS_SERVER_BIN/,
    );
    assert.equal(
      await locateNatsServer(["/nonexistent", "/usr/sbin/nats-server"]),
      "/usr/sbin/nats-server",
    );
  });

  it("starts JetStream on a free port with a temporary store, and removes it afterwards", async () => {
    const a = await NatsServer.start();
    const b = await NatsServer.start();
    try {
      assert.notEqual(a.port, b.port);
      const nc = await a.connect();
      const jsm = await jetstreamManager(nc);
      await jsm.streams.add({ name: "T", subjects: ["t.>"] });
      const ack = await jetstream(nc).publish("t.x", "hello");
      assert.equal(ack.seq, 1);
      assert.ok(existsSync(a.storeDir));
      await nc.close();
    } finally {
      await a.stop();
      await b.stop();
    }
    assert.ok(!existsSync(a.dir), "the temporary store is gone");
  });

  it("restarts on the same port and store, keeping the streams", async () => {
    const s = await NatsServer.start();
    try {
      let nc = await s.connect();
      await (await jetstreamManager(nc)).streams.add({ name: "R", subjects: ["r.>"] });
      await jetstream(nc).publish("r.1", "x");
      await nc.close();
      await s.kill();
      await s.restart();
      nc = await s.connect();
      const info = await (await jetstreamManager(nc)).streams.info("R");
      assert.equal(info.state.messages, 1);
      await nc.close();
    } finally {
      await s.stop();
    }
  });
});
