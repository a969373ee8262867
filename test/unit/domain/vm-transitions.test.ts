/**
 * The lifecycle written out by hand: which command may start from which state, where it leads,
 * and which states count as live. Stated here, not derived from TRANSITIONS, so a change to the
 * table fails a test instead of changing the expectation with it.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { COMMAND_TYPES, type CommandType, type VmState } from "../../../src/contracts/index.js";
import { isAllowed, isLive, targetState } from "../../../src/domain/index.js";

const STATES: (VmState | null)[] = [
  null,
  "preparing",
  "prepared",
  "running",
  "suspended",
  "stopped",
  "failed",
  "destroyed",
  "unknown",
];

const LIFECYCLE: Record<CommandType, { from: (VmState | null)[]; to: VmState | null }> = {
  "vm.prepare": { from: [null, "destroyed"], to: "prepared" },
  "vm.start": { from: ["prepared", "stopped"], to: "running" },
  "vm.suspend": { from: ["running"], to: "suspended" },
  "vm.resume": { from: ["suspended"], to: "running" },
  "vm.stop": { from: ["running", "suspended"], to: "stopped" },
  // destroy cleans up whatever is there, including a VM in a state nobody can name
  "vm.destroy": {
    from: [
      "preparing",
      "prepared",
      "running",
      "suspended",
      "stopped",
      "failed",
      "destroyed",
      "unknown",
    ],
    to: "destroyed",
  },
  // a disk is exported only while no guest runs on it, and the state stays as it was
  "vm.export-disk": { from: ["prepared", "stopped"], to: null },
};

describe("the lifecycle table", () => {
  it("covers every command type", () => {
    assert.deepEqual([...COMMAND_TYPES].sort(), Object.keys(LIFECYCLE).sort());
  });

  for (const type of COMMAND_TYPES) {
    it(`${type} is allowed from exactly ${LIFECYCLE[type].from.map((s) => s ?? "(new)").join(", ")}`, () => {
      const allowed = STATES.filter((s) => isAllowed(type, s));
      assert.deepEqual(allowed, LIFECYCLE[type].from);
    });
    it(`${type} leads to ${LIFECYCLE[type].to ?? "the state it came from"}`, () => {
      assert.equal(targetState(type), LIFECYCLE[type].to);
    });
  }

  it("only running and suspended VMs are live; unknown is never taken for dead or alive", () => {
    const live = STATES.filter((s) => isLive(s));
    assert.deepEqual(live, ["running", "suspended"]);
  });
});
