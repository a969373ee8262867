import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { COMMAND_FAILPOINTS as FAILPOINTS } from "../../src/lib/failpoints.js";
import { runChaos } from "../helpers/chaos.js";

describe(
  "fault: the worker SIGKILLs itself at every step of its commands, over many VMs",
  { timeout: 240_000 },
  () => {
    it("every command ends with exactly one outcome, nothing pending, no double effect, the view equals a replay", async () => {
      // First one worker killed at each step in turn (deterministic), then random kills.
      const s = await runChaos({
        vms: 12,
        failpoints: FAILPOINTS.map((f) => `${f}=0.015`).join(","),
        deadlineMs: 180_000,
        log: (l) => process.stderr.write(`# ${l}\n`),
      });
      process.stderr.write(`# chaos summary: ${JSON.stringify(s)}\n`);
      assert.ok(s.restarts >= FAILPOINTS.length, "the failpoints did kill the worker");
      for (const f of FAILPOINTS) assert.ok(s.kills[f] >= 1, `a worker was killed at ${f}`);
      assert.deepEqual(s.scheduleNotFired, [], "every scheduled failpoint fired");
      assert.equal(s.otherDeaths, 0, "no worker died except by a failpoint");
      assert.equal(s.lost, 0, "no command without outcome");
      assert.equal(s.duplicateOutcomes, 0, "no command with two outcomes");
      assert.equal(s.outcomes, s.commandsSent);
      assert.equal(s.pendingPastDeadline, 0);
      assert.deepEqual(s.doubleEffects, [], "no guest was started or stopped twice");
      assert.deepEqual(
        s.missingEffects,
        [],
        "the call log holds every successful command's effect",
      );
      assert.deepEqual(s.viewMismatches, [], "the vms view equals a fresh replay");
      assert.deepEqual(s.outOfOrder, [], "every VM's commands took effect in stream order");
    });
  },
);
