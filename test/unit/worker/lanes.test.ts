/**
 * Lanes: one task at a time per key in arrival order, keys started in the order they became
 * ready, at most `concurrency` at once; abandonQueued drops what has not started. Thousands of
 * keys exercise the ready queue's compaction.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Lanes } from "../../../src/worker/consumer/lanes.js";

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe("Lanes", () => {
  it("runs 5,000 keys in arrival order, each key's tasks in order, never above the limit", async () => {
    const lanes = new Lanes(7);
    const started: string[] = [];
    let running = 0;
    let most = 0;
    const all: Promise<unknown>[] = [];
    for (let round = 0; round < 2; round++)
      for (let k = 0; k < 5_000; k++)
        all.push(
          lanes.run(`k${k}`, async () => {
            started.push(`k${k}/${round}`);
            most = Math.max(most, ++running);
            await tick();
            running--;
          }),
        );
    await Promise.all(all);
    await lanes.idle();
    assert.equal(started.length, 10_000);
    assert.ok(most <= 7 && most > 1, `at most 7 at once (saw ${most})`);
    // Keys start in the order they became ready: every first round before any second round.
    assert.deepEqual(
      started.slice(0, 5_000),
      Array.from({ length: 5_000 }, (_, k) => `k${k}/0`),
    );
    for (let k = 0; k < 5_000; k++)
      assert.ok(started.indexOf(`k${k}/0`) < started.indexOf(`k${k}/1`));
  });

  it("abandons what has not started, and takes new work after", async () => {
    const lanes = new Lanes(1);
    const ran: number[] = [];
    const results = Array.from({ length: 3_000 }, (_, i) =>
      lanes.run(`v${i}`, async () => {
        ran.push(i);
        await tick();
        return i;
      }),
    );
    assert.equal(lanes.abandonQueued(), 2_999);
    assert.equal(await results[0], 0);
    assert.equal(await results[1], undefined);
    assert.equal(await lanes.run("again", () => Promise.resolve("yes")), "yes");
    assert.deepEqual(ran, [0]);
    await lanes.idle();
  });
});
