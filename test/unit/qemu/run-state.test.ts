import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { mapRunState, RUN_STATE_MAP } from "../../../src/hypervisor/backends/qemu/run-state.js";

describe("QEMU RunState mapping", () => {
  it("maps every RunState of QEMU 7.2 explicitly", () => {
    const expected = {
      running: "running",
      paused: "suspended",
      suspended: "suspended",
      shutdown: "stopped",
      "guest-panicked": "failed",
      "internal-error": "failed",
      "io-error": "failed",
      watchdog: "failed",
      debug: "unknown",
      inmigrate: "unknown",
      postmigrate: "unknown",
      prelaunch: "unknown",
      "finish-migrate": "unknown",
      "restore-vm": "unknown",
      "save-vm": "unknown",
      colo: "unknown",
    };
    assert.deepEqual({ ...RUN_STATE_MAP }, expected);
    for (const [k, v] of Object.entries(expected)) assert.equal(mapRunState(k), v, k);
  });

  it("answers unknown, never running, for anything it cannot map", () => {
    for (const s of [
      "",
      "RUNNING",
      "running ",
      "toString",
      "__proto__",
      "hibernating",
      undefined,
      null,
      3,
      {},
    ]) {
      assert.equal(mapRunState(s), "unknown", JSON.stringify(s) ?? "undefined");
    }
    const runningOnes = Object.entries(RUN_STATE_MAP).filter(([, v]) => v === "running");
    assert.deepEqual(runningOnes, [["running", "running"]]);
  });
});
