/**
 * The stop schedule (src/domain/stop-schedule.ts): the deadline of a stop or destroy and the
 * plan of each run, first or resumed after a crash, as properties over any timing.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import {
  STOP_ESCALATION,
  STOP_ESCALATION_MS,
  stopDeadline,
  stopPlan,
  type StopPlan,
} from "../../../src/domain/index.js";

const T0 = Date.parse("2026-01-01T00:00:00Z");
const steps = (p: StopPlan) => p.sigtermGraceMs + p.sigkillWaitMs;
const full = {
  sigtermGraceMs: STOP_ESCALATION.sigtermGraceMs,
  sigkillWaitMs: STOP_ESCALATION.sigkillWaitMs,
};

/** A stop accepted at T0 with its deadline, run again `after` ms later. */
const timing = fc.record({
  timeoutMs: fc.integer({ min: 0, max: 3_600_000 }),
  allowanceMs: fc.integer({ min: 0, max: 300_000 }),
  after: fc.integer({ min: 0, max: 5_000_000 }),
});
const planOf = (t: { timeoutMs: number; allowanceMs: number; after: number }) => {
  const deadline = stopDeadline(T0, t.timeoutMs, t.allowanceMs);
  return {
    deadline,
    plan: stopPlan({ acceptedAt: T0, timeoutMs: t.timeoutMs, deadline, now: T0 + t.after }),
  };
};

describe("stop schedule", () => {
  it("the deadline is acceptance + timeout + escalation + the crash allowance", () => {
    assert.equal(STOP_ESCALATION_MS, 15_000);
    assert.equal(stopDeadline(T0, 1_000) - T0, 16_000);
    assert.equal(stopDeadline(T0, 1_000, 30_000) - T0, 46_000);
    assert.equal(stopDeadline(T0, 1_000, -5) - T0, 16_000, "a negative allowance counts as none");
  });

  it("a fresh run gets the whole window and every step in full", () => {
    fc.assert(
      fc.property(timing, (t) => {
        const { plan } = planOf({ ...t, after: 0 });
        assert.deepEqual(plan, { gracefulMs: t.timeoutMs, ...full });
      }),
    );
  });

  it("never more than the deadline allows, never more than what is left of the window", () => {
    fc.assert(
      fc.property(timing, (t) => {
        const { deadline, plan } = planOf(t);
        const now = T0 + t.after;
        assert.ok(now + plan.gracefulMs + steps(plan) <= Math.max(now, deadline));
        assert.ok(plan.gracefulMs <= Math.max(0, t.timeoutMs - t.after));
        for (const v of Object.values(plan)) assert.ok(Number.isInteger(v) && v >= 0);
      }),
    );
  });

  it("a run resumed within the crash allowance keeps every escalation step in full", () => {
    fc.assert(
      fc.property(timing, (t) => {
        fc.pre(t.after <= t.timeoutMs + t.allowanceMs);
        const { plan } = planOf(t);
        assert.deepEqual(
          { sigtermGraceMs: plan.sigtermGraceMs, sigkillWaitMs: plan.sigkillWaitMs },
          full,
        );
        assert.equal(plan.gracefulMs, Math.max(0, t.timeoutMs - t.after));
      }),
    );
  });

  it("later than that, the window is gone and the steps shrink in proportion, SIGKILL still before the deadline", () => {
    fc.assert(
      fc.property(timing, (t) => {
        const { deadline, plan } = planOf(t);
        const left = deadline - (T0 + t.after);
        fc.pre(left < STOP_ESCALATION_MS);
        assert.equal(plan.gracefulMs, 0);
        if (left > 0)
          assert.equal(plan.sigtermGraceMs, plan.sigkillWaitMs, "both steps get their share");
        assert.ok(steps(plan) <= Math.max(0, left));
      }),
    );
  });

  it("the issue's case: 20 s stop, worker killed at 3 s, redelivered 30 s later, escalates at once", () => {
    const deadline = stopDeadline(T0, 20_000, 30_000);
    const plan = stopPlan({ acceptedAt: T0, timeoutMs: 20_000, deadline, now: T0 + 33_000 });
    assert.deepEqual(plan, { gracefulMs: 0, ...full });
    const early = stopPlan({ acceptedAt: T0, timeoutMs: 20_000, deadline, now: T0 + 5_000 });
    assert.equal(early.gracefulMs, 15_000, "resumed early: the rest of its window, not 20 s again");
  });
});
