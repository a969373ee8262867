import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { silentLogger } from "../../../src/observability/logger.js";
import { Lifecycle, type Phase } from "../../../src/worker/lifecycle.js";
import { ServiceStack } from "../../../src/worker/service-stack.js";

const PHASES: Phase[] = ["idle", "starting", "running", "draining", "stopped", "failed"];

/** The moves a worker may make, written out here (not read from the code's table). */
const LEGAL = new Set([
  "idle>starting", // start()
  "idle>stopped", // drain() before start(): it stays stopped
  "starting>running",
  "starting>draining", // a stop while starting, after the current step
  "starting>failed",
  "running>draining",
  "draining>stopped",
  "failed>starting", // a retried start()
]);

/** A lifecycle walked to `phase` along legal moves. */
function at(phase: Phase): Lifecycle {
  const l = new Lifecycle();
  const path: Record<Phase, Phase[]> = {
    idle: [],
    starting: ["starting"],
    running: ["starting", "running"],
    draining: ["starting", "running", "draining"],
    stopped: ["stopped"],
    failed: ["starting", "failed"],
  };
  for (const p of path[phase]) l.move(p);
  return l;
}

describe("worker lifecycle", () => {
  for (const from of PHASES) {
    for (const to of PHASES) {
      const legal = LEGAL.has(`${from}>${to}`);
      it(`${from} -> ${to} is ${legal ? "allowed" : "refused"}`, () => {
        const l = at(from);
        assert.equal(l.can(to), legal);
        if (legal) {
          l.move(to);
          assert.equal(l.phase, to);
        } else {
          assert.throws(() => l.move(to), /cannot move/);
          assert.equal(l.phase, from, "a refused move changes nothing");
        }
      });
    }
  }

  it("tells listeners of each change of the public state, and ends on stopped or failed", async () => {
    const l = new Lifecycle();
    const seen: string[] = [];
    l.onChange((s, prev) => seen.push(`${prev}>${s}`));
    assert.equal(l.state, "starting", "not started yet reads as starting");
    l.move("starting"); // no change others can see
    l.move("running");
    l.move("draining");
    let ended = false;
    void l.ended.then(() => (ended = true));
    await Promise.resolve();
    assert.equal(ended, false);
    l.move("stopped");
    await l.ended;
    assert.deepEqual(seen, ["starting>running", "running>draining", "draining>stopped"]);
  });
});

describe("service stack", () => {
  const service = (name: string, log: string[], fail = false) => ({
    name,
    start: () => {
      log.push(`start ${name}`);
      return fail ? Promise.reject(new Error(`${name} failed`)) : Promise.resolve();
    },
    stop: () => {
      log.push(`stop ${name}`);
      return Promise.resolve();
    },
  });

  it("starts in order and stops in reverse", async () => {
    const log: string[] = [];
    const stack = new ServiceStack(silentLogger());
    for (const n of ["a", "b", "c"]) await stack.start(service(n, log));
    await stack.stopAll();
    assert.deepEqual(log, ["start a", "start b", "start c", "stop c", "stop b", "stop a"]);
    await stack.stopAll();
    assert.equal(log.length, 6, "a second stopAll stops nothing twice");
  });

  it("times each step of the start, services and plain steps, in order, a failed one too", async () => {
    const log: string[] = [];
    const stack = new ServiceStack(silentLogger());
    const slow = { name: "slow", start: () => new Promise<void>((r) => setTimeout(r, 40)) };
    await stack.start(service("a", log));
    assert.equal(await stack.timed("plain", () => Promise.resolve(7)), 7);
    await stack.start(slow);
    await assert.rejects(stack.start(service("b", log, true)), /b failed/);
    assert.deepEqual(
      stack.timings.map((t) => t.step),
      ["a", "plain", "slow", "b"],
    );
    // Timers may fire a little early, never much: 40 ms asked, at least 30 ms measured.
    assert.ok((stack.timings[2]?.ms ?? 0) >= 30, JSON.stringify(stack.timings));
    assert.ok((stack.timings[0]?.ms ?? 99) < (stack.timings[2]?.ms ?? 0), "a took no wait");
  });

  it("stops a service whose start failed half way, and those before it", async () => {
    const log: string[] = [];
    const stack = new ServiceStack(silentLogger());
    await stack.start(service("a", log));
    await assert.rejects(stack.start(service("b", log, true)), /b failed/);
    await stack.stopAll();
    assert.deepEqual(log, ["start a", "start b", "stop b", "stop a"]);
  });

  it("after abort() starts nothing more, with the abort's reason", async () => {
    const log: string[] = [];
    const stack = new ServiceStack(silentLogger());
    await stack.start(service("a", log));
    stack.abort();
    await assert.rejects(stack.start(service("b", log)), (e) => e === stack.stopping.reason);
    await stack.stopAll();
    assert.deepEqual(log, ["start a", "stop a"]);
  });

  it("does not let a stuck stop hold up the others past its bound", async () => {
    const log: string[] = [];
    const stack = new ServiceStack(silentLogger());
    await stack.start(service("a", log));
    await stack.start({
      name: "stuck",
      stopTimeoutMs: 50,
      start: () => Promise.resolve(),
      stop: () => new Promise<void>(() => undefined),
    });
    await stack.stopAll();
    assert.deepEqual(log, ["start a", "stop a"]);
  });
});
