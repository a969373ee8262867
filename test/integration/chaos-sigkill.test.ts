import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { runChaos } from "../helpers/chaos.js";

describe(
  "fault: the worker SIGKILLs itself at every step of its commands, over many VMs",
  { timeout: 240_000 },
  () => {
    it("every command ends with exactly one outcome, nothing pending, no double effect, the view equals a replay", async () => {
      const s = await runChaos({
        vms: 12,
        failpoints:
          "before-intent=0.03,after-intent=0.03,in-backend=0.03,after-outcome=0.03,before-ack=0.03",
        deadlineMs: 180_000,
        log: (l) => process.stderr.write(`# ${l}\n`),
      });
      process.stderr.write(`# chaos summary: ${JSON.stringify(s)}\n`);
      assert.ok(s.restarts >= 1, "the failpoints did kill the worker");
      assert.equal(s.lost, 0, "no command without outcome");
      assert.equal(s.duplicateOutcomes, 0, "no command with two outcomes");
      assert.equal(s.outcomes, s.commandsSent);
      assert.equal(s.pendingPastDeadline, 0);
      assert.deepEqual(s.doubleEffects, [], "no guest was started or stopped twice");
      assert.deepEqual(s.viewMismatches, [], "the vms view equals a fresh replay");
      assert.deepEqual(s.outOfOrder, [], "every VM's commands took effect in stream order");
    });
  },
);
