/**
 * A cancelled command (vmq cancel) is rejected with command::cancelled before anything is
 * recorded or run; a command already accepted is not touched by a cancel that comes later.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { command, pipeline, SPEC } from "../../helpers/pipeline-fixture.js";

describe("cancelled commands in the pipeline", () => {
  it("a cancelled command is rejected with command::cancelled, no intent, no backend call", async () => {
    const cancelled = new Set<string>();
    const p = pipeline({ cancelled });
    await p.handler.handle(p.message(command({ type: "vm.prepare", vmId: "a", spec: SPEC })));
    const start = command({ type: "vm.start", vmId: "a" });
    cancelled.add(start.commandId);
    assert.deepEqual(await p.handler.handle(p.message(start)), { kind: "ack" });
    const events = (await p.store.readVm("h1", "a")).map((e) => e.event);
    const last = events.at(-1);
    assert.equal(last?.type, "vm.command-rejected");
    assert.equal(last.type === "vm.command-rejected" && last.code, "command::cancelled");
    assert.equal(last.state, "prepared", "no effect on the VM's state");
    assert.ok(
      !events.some((e) => e.type === "vm.command-accepted" && e.causationId === start.commandId),
    );
    assert.deepEqual(p.effects(), ["prepare:a"], "the backend was never asked to start");
    // Delivered again (a lost ack): the same outcome stands, nothing more happens.
    await p.handler.handle(p.message(start, { delivery: 2 }));
    assert.equal((await p.history("a")).length, events.length);
  });

  it("a cancel that comes after the command was decided changes nothing", async () => {
    const cancelled = new Set<string>();
    const p = pipeline({ cancelled });
    const prep = command({ type: "vm.prepare", vmId: "b", spec: SPEC });
    await p.handler.handle(p.message(prep));
    cancelled.add(prep.commandId);
    await p.handler.handle(p.message(prep, { delivery: 2 }));
    assert.deepEqual(await p.history("b"), ["vm.command-accepted", "vm.prepared"]);
  });

  it("an uncancelled command of the same VM runs as usual", async () => {
    const p = pipeline({ cancelled: new Set(["someone-else"]) });
    await p.handler.handle(p.message(command({ type: "vm.prepare", vmId: "c", spec: SPEC })));
    assert.deepEqual(await p.history("c"), ["vm.command-accepted", "vm.prepared"]);
  });
});
