/**
 * The retry policy as a table: (attempt, delivery, deadline, error kind) -> next step. The
 * backoff's jitter is fixed (random = 0: half the exponential step), so each row is exact:
 * attempts back off 125, 250, 500 ms...; deliveries 500, 1000, 2000 ms... up to 15 s.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  afterBackendFailure,
  afterRecordingFailure,
  type BackendFailure,
  type BackendStep,
  type RecordingStep,
} from "../../../src/worker/pipeline/retry-policy.js";

const base: BackendFailure = {
  retryable: true,
  deadlinePassed: false,
  attempt: 1,
  maxAttempts: 3,
  delivery: 1,
  maxDeliver: 10,
  now: 0,
  deadline: 60_000,
  random: () => 0,
};

const backendRows: [string, Partial<BackendFailure>, BackendStep][] = [
  ["transient, first attempt: retried in the lane", {}, { kind: "retry", waitMs: 125 }],
  ["transient, second attempt: a longer wait", { attempt: 2 }, { kind: "retry", waitMs: 250 }],
  [
    "transient, attempts used up: back to the stream",
    { attempt: 3 },
    { kind: "redeliver", delayMs: 500 },
  ],
  [
    "the delay grows with the delivery",
    { attempt: 3, delivery: 3 },
    { kind: "redeliver", delayMs: 2_000 },
  ],
  [
    "and is capped at 30 s (15 s without jitter)",
    { attempt: 3, delivery: 9 },
    { kind: "redeliver", delayMs: 15_000 },
  ],
  [
    "attempts left on a later delivery: still retried here",
    { attempt: 2, delivery: 6 },
    { kind: "retry", waitMs: 250 },
  ],
  ["permanent: recorded at once", { retryable: false }, { kind: "fail" }],
  [
    "permanent on a later attempt too",
    { retryable: false, attempt: 3, delivery: 4 },
    { kind: "fail" },
  ],
  ["the last delivery: recorded, never sent back", { delivery: 10 }, { kind: "fail" }],
  ["past the last delivery (a count after a crash)", { delivery: 12 }, { kind: "fail" }],
  ["the deadline has passed: recorded", { deadlinePassed: true }, { kind: "fail" }],
  [
    "a wait that fits before the deadline: retried",
    { deadline: 126 },
    { kind: "retry", waitMs: 125 },
  ],
  [
    "a wait that would end at the deadline: not retried; nor redelivered",
    { deadline: 125 },
    { kind: "fail" },
  ],
  [
    "no attempts left, a redelivery after the deadline: recorded",
    { attempt: 3, deadline: 500 },
    { kind: "fail" },
  ],
  [
    "no attempts left, a redelivery before the deadline",
    { attempt: 3, deadline: 501 },
    { kind: "redeliver", delayMs: 500 },
  ],
  ["one attempt per delivery", { maxAttempts: 1 }, { kind: "redeliver", delayMs: 500 }],
];

describe("retry policy: after a failed backend call", () => {
  for (const [name, row, step] of backendRows) {
    it(name, () => assert.deepEqual(afterBackendFailure({ ...base, ...row }), step));
  }

  it("jitter stays within half to all of the exponential step", () => {
    for (const r of [0, 0.5, 0.999]) {
      const s = afterBackendFailure({ ...base, attempt: 3, delivery: 2, random: () => r });
      assert.equal(s.kind, "redeliver");
      assert.ok(
        s.kind === "redeliver" && s.delayMs >= 1_000 && s.delayMs <= 2_000,
        `${r}: ${JSON.stringify(s)}`,
      );
    }
  });
});

const recordingRows: [string, { draining: boolean; delivery: number }, RecordingStep][] = [
  [
    "a drain gave up: abandoned, straight back",
    { draining: true, delivery: 1 },
    { kind: "abandon" },
  ],
  [
    "a drain on the last delivery still abandons",
    { draining: true, delivery: 5 },
    { kind: "abandon" },
  ],
  [
    "NATS trouble: redelivered later",
    { draining: false, delivery: 1 },
    { kind: "redeliver", delayMs: 500 },
  ],
  [
    "later deliveries wait longer",
    { draining: false, delivery: 4 },
    { kind: "redeliver", delayMs: 4_000 },
  ],
  [
    "the last delivery: given up (dead-lettered)",
    { draining: false, delivery: 5 },
    { kind: "give-up" },
  ],
];

describe("retry policy: after recording a command failed", () => {
  for (const [name, row, step] of recordingRows) {
    it(name, () =>
      assert.deepEqual(afterRecordingFailure({ ...row, maxDeliver: 5, random: () => 0 }), step),
    );
  }
});
