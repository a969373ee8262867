/** The commands and DLQ streams' age and size limits follow the worker's flags, and are metrics. */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { jetstreamManager } from "@nats-io/jetstream";
import { Harness } from "../helpers/worker-harness.js";

describe("stream limits", { timeout: 60_000 }, () => {
  let h: Harness;
  before(async () => {
    h = await Harness.start();
  });
  after(async () => h.stop());

  const limits = async (stream: string) => {
    const c = (await (await jetstreamManager(h.nc)).streams.info(stream)).config;
    return { maxAgeMs: c.max_age / 1e6, maxBytes: c.max_bytes };
  };

  it("creates the streams with the flags' limits, brings an existing stream to new ones, and reports them", async () => {
    const { worker } = await h.worker({
      host: "sl",
      commandsMaxAgeMs: 3_600_000,
      commandsMaxBytes: 10 * 1024 ** 2,
      dlqMaxAgeMs: 7_200_000,
      dlqMaxBytes: 5 * 1024 ** 2,
      http: "127.0.0.1:0",
    });
    const n = h.client.names;
    assert.deepEqual(await limits(n.commandsStream), {
      maxAgeMs: 3_600_000,
      maxBytes: 10 * 1024 ** 2,
    });
    assert.deepEqual(await limits(n.dlqStream), { maxAgeMs: 7_200_000, maxBytes: 5 * 1024 ** 2 });
    const metrics = await (await fetch(`http://127.0.0.1:${worker.httpPort}/metrics`)).text();
    assert.match(
      metrics,
      new RegExp(`vmq_stream_max_bytes\\{stream="${n.commandsStream}"\\} ${10 * 1024 ** 2}`),
    );
    assert.match(
      metrics,
      new RegExp(`vmq_stream_max_age_seconds\\{stream="${n.dlqStream}"\\} 7200`),
    );
    assert.match(metrics, new RegExp(`vmq_stream_bytes\\{stream="${n.eventsStream}"\\} \\d+`));
    await worker.drain();
    const { worker: again } = await h.worker({ host: "sl", commandsMaxBytes: 20 * 1024 ** 2 });
    assert.equal((await limits(n.commandsStream)).maxBytes, 20 * 1024 ** 2, "updated in place");
    assert.equal(
      (await limits(n.commandsStream)).maxAgeMs,
      7 * 24 * 3_600_000,
      "back to the default age",
    );
    await again.drain();
  });
});
