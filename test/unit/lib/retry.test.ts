import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { retry, waitFor } from "../../../src/lib/retry.js";

const failing = (times: number) => {
  let calls = 0;
  return {
    calls: () => calls,
    fn: (attempt: number): Promise<number> => {
      calls++;
      assert.equal(attempt, calls, "attempts are numbered from 1");
      return calls > times ? Promise.resolve(calls) : Promise.reject(new Error(`fail ${calls}`));
    },
  };
};

describe("retry", () => {
  it("tries again until it succeeds, waiting between attempts", async () => {
    const f = failing(3);
    const waits: number[] = [];
    const v = await retry(f.fn, { baseMs: 4, capMs: 16, onRetry: (_e, _a, w) => waits.push(w) });
    assert.equal(v, 4);
    assert.equal(waits.length, 3);
    // Full jitter: half to all of 4, 8, 16 ms.
    waits.forEach((w, i) => assert.ok(w >= 2 ** (i + 1) && w <= 2 ** (i + 2), `${i}: ${w}`));
  });

  it("rethrows the last error once the attempts are used up", async () => {
    const f = failing(10);
    await assert.rejects(retry(f.fn, { attempts: 3, baseMs: 1, capMs: 1 }), /fail 3/);
    assert.equal(f.calls(), 3);
  });

  it("rethrows at once an error retryIf refuses", async () => {
    const f = failing(10);
    await assert.rejects(
      retry(f.fn, { baseMs: 1, capMs: 1, retryIf: (e) => !String(e).includes("fail 2") }),
      /fail 2/,
    );
    assert.equal(f.calls(), 2);
  });

  it("gives up when a wait would end past its time", async () => {
    const f = failing(100);
    const began = Date.now();
    await assert.rejects(retry(f.fn, { baseMs: 20, capMs: 20, timeoutMs: 100 }), /fail/);
    assert.ok(Date.now() - began <= 150, "never waits past the time");
    assert.ok(f.calls() >= 2 && f.calls() <= 11, `${f.calls()} attempts`);
  });

  it("stops with the signal's reason, during a wait or before an attempt", async () => {
    const f = failing(100);
    const ac = new AbortController();
    const reason = new Error("stop");
    setTimeout(() => ac.abort(reason), 30);
    await assert.rejects(
      retry(f.fn, { baseMs: 1_000, capMs: 1_000, signal: ac.signal }),
      (e) => e === reason,
    );
    assert.equal(f.calls(), 1);
    await assert.rejects(
      retry(f.fn, { baseMs: 1, capMs: 1, signal: ac.signal }),
      (e) => e === reason,
    );
    assert.equal(f.calls(), 1, "an aborted signal runs nothing");
  });

  it("waits before the first attempt when asked", async () => {
    const began = Date.now();
    let at = 0;
    await retry(
      () => {
        at = Date.now() - began;
        return Promise.resolve();
      },
      { baseMs: 40, capMs: 40, waitFirst: true },
    );
    assert.ok(at >= 19, `first attempt after ${at} ms`);
  });
});

describe("waitFor", () => {
  it("returns the first value the check gives", async () => {
    let n = 0;
    assert.equal(
      await waitFor(() => (++n === 3 ? "ready" : undefined), { intervalMs: 1, timeoutMs: 1_000 }),
      "ready",
    );
    assert.equal(n, 3);
  });
  it("returns undefined when the time is up", async () => {
    let n = 0;
    const v = await waitFor(() => (n++, undefined), { intervalMs: 10, timeoutMs: 50 });
    assert.equal(v, undefined);
    assert.ok(n >= 2 && n <= 6, `${n} checks`);
  });
});
