/** The EventStore conformance suite against the JetStream store on a real nats-server. */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { names as namesFor } from "../../src/contracts/index.js";
import { JetStreamEventStore } from "../../src/event-store/jetstream-event-store.js";
import { ensureTopology } from "../../src/event-store/provision.js";
import { isVmqError } from "../../src/lib/errors.js";
import { NatsServer, testPrefix } from "../helpers/nats-server.js";
import { eventOf, eventStoreConformance } from "./event-store.conformance.js";

for (const via of ["batch", "fetch"] as const)
  eventStoreConformance(`jetstream (replay by ${via})`, async () => {
    const server = await NatsServer.start();
    const nc = await server.connect();
    const names = namesFor(testPrefix());
    await ensureTopology(nc, await jetstreamManager(nc), names);
    return {
      store: new JetStreamEventStore(jetstream(nc), names, { connection: nc, replayVia: via }),
      cleanup: async () => {
        await nc.close();
        await server.stop();
      },
    };
  });

describe("jetstream replay of a stream it cannot fully read", () => {
  let server: NatsServer;
  let nc: NatsConnection;
  before(async () => {
    server = await NatsServer.start();
    nc = await server.connect();
  });
  after(async () => {
    await nc.close();
    await server.stop();
  });

  /** 2,500 events (more than one pull batch), one of them `bad` at `at`. */
  async function streamWith(
    bad: string,
    at: number,
  ): Promise<{ store: (via: "batch" | "fetch") => JetStreamEventStore; host: string }> {
    const names = namesFor(testPrefix());
    await ensureTopology(nc, await jetstreamManager(nc), names);
    const host = "h1";
    const enc = new TextEncoder();
    for (let i = 1; i <= 2_500; i++) {
      const vmId = `vm-${i % 50}`;
      const e = {
        type: "vm.destroyed",
        version: 1,
        eventId: `e-${i}`,
        vmId,
        host,
        at: "2026-11-25T10:00:00.000Z",
        causationId: null,
        state: "destroyed",
      };
      nc.publish(names.evt(host, vmId), enc.encode(i === at ? bad : JSON.stringify(e)));
    }
    await nc.flush();
    const jsm = await jetstreamManager(nc);
    await waitUntil(
      async () => (await jsm.streams.info(names.eventsStream)).state.messages === 2_500,
    );
    return {
      host,
      store: (via) =>
        new JetStreamEventStore(jetstream(nc), names, { connection: nc, replayVia: via }),
    };
  }

  for (const via of ["batch", "fetch"] as const)
    for (const [what, bad] of [
      ["not JSON", "{nope"],
      ["a schema failure", JSON.stringify({ type: "vm.destroyed", version: 1, vmId: "vm-1" })],
      ["a newer version", JSON.stringify({ type: "vm.started", version: 9 })],
    ] as const)
      it(`stops at ${what} (replay by ${via}), having applied only the events before it`, async () => {
        const { store, host } = await streamWith(bad, 2_100);
        const seen: number[] = [];
        await assert.rejects(
          store(via).replay(host, 0, (e) => seen.push(e.seq)),
          (e: unknown) =>
            what === "not JSON"
              ? e instanceof Error
              : isVmqError(e, "event-store::unreadable-event"),
        );
        assert.equal(seen.length, 2_099);
        assert.deepEqual(seen.slice(-2), [2_098, 2_099]);
      });
});

async function waitUntil(ok: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (await ok()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error("timed out");
}

describe("jetstream compaction on an events stream made with deny_delete (before 0.1.0)", () => {
  it("purges by subject instead, and says so once", async () => {
    const server = await NatsServer.start();
    const nc = await server.connect();
    try {
      const names = namesFor(testPrefix());
      const jsm = await jetstreamManager(nc);
      await jsm.streams.add({
        name: names.eventsStream,
        subjects: [`${names.prefix}.evt.>`],
        allow_direct: true,
        deny_delete: true,
      });
      await ensureTopology(nc, jsm, names);
      const store = new JetStreamEventStore(jetstream(nc), names);
      let told = 0;
      store.purger.onDeletesDenied = () => told++;
      const ev = (vmId: string) => ({ ...eventOf("h1", vmId), host: "h1" });
      for (const vmId of ["a", "b"]) {
        const s1 = await store.append(ev(vmId), 0);
        const s2 = await store.append(ev(vmId), s1);
        assert.equal(await store.purgeVm("h1", vmId, s2, [s1, s2]), 2, `${vmId}: purged`);
        assert.deepEqual(await store.readVm("h1", vmId), []);
      }
      assert.equal(told, 1, "told once, not per VM");
      assert.equal((await jsm.streams.info(names.eventsStream)).config.deny_delete, true);
    } finally {
      await nc.close();
      await server.stop();
    }
  });
});
