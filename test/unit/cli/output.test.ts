import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parse } from "yaml";
import { age, colourOn, formatOf, machine, sinceOption, table } from "../../../src/cli/output.js";
import { hostTable, vmTable, vmVersion } from "../../../src/cli/views.js";
import type { HostRecord, VmView } from "../../../src/contracts/index.js";
import { isVmqError } from "../../../src/lib/errors.js";

const NOW = Date.parse("2026-06-01T12:00:00.000Z");
const VIEW: VmView = {
  vmId: "web-1",
  host: "h1",
  state: "running",
  lastEventSeq: 4815,
  eventCount: 6,
  handle: null,
  pending: null,
  updatedAt: "2026-06-01T11:57:00.000Z",
};

describe("CLI output", () => {
  it("ages read as kubectl's: seconds, minutes, hours, days; no time is '-'", () => {
    const ago = (ms: number) => age(new Date(NOW - ms).toISOString(), NOW);
    assert.equal(ago(5_000), "5s");
    assert.equal(ago(180_000), "3m");
    assert.equal(ago(3 * 3_600_000), "3h");
    assert.equal(ago(72 * 3_600_000), "3d");
    assert.equal(ago(-5_000), "0s", "a clock ahead of ours is not a negative age");
    assert.equal(age(undefined, NOW), "-");
    assert.equal(age("not a time", NOW), "-");
  });

  it("--since takes a duration back from now or an ISO time; anything else is cli::invalid-option", () => {
    assert.equal(sinceOption("10m", NOW).getTime(), NOW - 600_000);
    assert.equal(sinceOption("2h", NOW).getTime(), NOW - 7_200_000);
    assert.equal(sinceOption("7d", NOW).getTime(), NOW - 7 * 86_400_000);
    assert.equal(
      sinceOption("2026-01-02T03:04:05Z", NOW).toISOString(),
      "2026-01-02T03:04:05.000Z",
    );
    for (const bad of ["10", "ten minutes", "10y", "-5m", "2026-13-45"])
      assert.throws(
        () => sinceOption(bad, NOW),
        (e) => isVmqError(e) && e.code === "cli::invalid-option",
        bad,
      );
  });

  it("colour only on a terminal and never with NO_COLOR set", () => {
    assert.equal(colourOn({ isTTY: true }, {}), true);
    assert.equal(colourOn({ isTTY: false }, {}), false);
    assert.equal(colourOn({}, {}), false);
    assert.equal(colourOn({ isTTY: true }, { NO_COLOR: "1" }), false);
    const plain = table(["A", "STATE"], [["x", { text: "running", tone: "green" }]], false);
    const ESC = String.fromCharCode(27);
    assert.ok(!plain.includes(ESC));
    const coloured = table(["A", "STATE"], [["x", { text: "running", tone: "green" }]], true);
    assert.ok(coloured.includes(`${ESC}[32mrunning${ESC}[0m`));
    // Escape codes do not shift the columns: without them both tables read the same.
    assert.equal(coloured.replaceAll(ESC, "").replace(/\[\d+m/g, ""), plain);
  });

  it("-o json and -o yaml print the same record; --json means -o json", () => {
    assert.equal(formatOf({ json: true }), "json");
    assert.equal(formatOf({ output: "yaml" }), "yaml");
    assert.equal(formatOf({}), "table");
    assert.deepEqual(JSON.parse(machine("json", VIEW)), VIEW);
    assert.deepEqual(parse(machine("yaml", VIEW)), VIEW);
    assert.match(machine("yaml", VIEW), /updatedAt: 2026-06-01T11:57:00.000Z/, "absolute times");
  });

  it("tables show the VM's own version and its age; wide adds the stream sequence", () => {
    const [head, row] = vmTable([VIEW], false, false, NOW).trim().split("\n");
    assert.match(head ?? "", /^VMID +HOST +STATE +VERSION +PENDING +AGE$/);
    assert.match(row ?? "", /^web-1 +h1 +running +6 +- +3m$/);
    const wide = vmTable([VIEW], true, false, NOW);
    assert.match(wide, /SEQ/);
    assert.match(wide, / 4815 /);
    assert.match(wide, /2026-06-01T11:57:00\.000Z/);
    assert.equal(vmVersion({ ...VIEW, eventCount: undefined }), "-", "an old record has no count");
  });

  it("the hosts table gives the heartbeat's age, one word per column", () => {
    const h: HostRecord = {
      host: "h1",
      role: "active",
      state: "running",
      version: "0.1.0",
      backends: ["noop"],
      vmCount: 2,
      inFlight: 0,
      heartbeatAt: new Date(NOW - 4_000).toISOString(),
      labels: {},
    } as unknown as HostRecord;
    const row = hostTable([h], false, false, NOW).trim().split("\n")[1] ?? "";
    assert.deepEqual(row.split(/\s+/), [
      "h1",
      "active",
      "running",
      "0.1.0",
      "noop",
      "2",
      "0",
      "4s",
      "-",
    ]);
  });
});
