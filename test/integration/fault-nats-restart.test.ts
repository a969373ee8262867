import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import type { CommandBody } from "../../src/client/index.js";
import type { VmEvent } from "../../src/contracts/index.js";
import type { Worker } from "../../src/worker/worker.js";
import { Harness, SPEC, eventually } from "../helpers/worker-harness.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("fault: nats-server killed and restarted under load", { timeout: 180_000 }, () => {
  let h: Harness;
  let worker: Worker;
  before(async () => {
    h = await Harness.start();
    ({ worker } = await h.worker({
      host: "nr",
      concurrency: 8,
      noop: { latencyMs: 5 },
      ackWaitMs: 5_000,
    }));
  });
  after(async () => h.stop());

  it("loses no confirmed command, runs each once, and the worker resumes without restarting", async () => {
    const VMS = 16;
    const confirmed: { vmId: string; commandId: string }[] = [];
    /** Publishes with retries under the same commandId (= Nats-Msg-Id), as a careful scheduler does. */
    const publish = async (body: CommandBody) => {
      const commandId = randomUUID();
      for (let i = 0; i < 200; i++) {
        try {
          await h.client.publish("nr", { ...body, commandId });
          confirmed.push({ vmId: body.vmId, commandId });
          return;
        } catch {
          await sleep(100);
        }
      }
      throw new Error("could not publish for 20 s");
    };
    let stop = false;
    const schedulers = Array.from({ length: VMS }, async (_, i) => {
      const vmId = `nr-${i}`;
      await publish({ type: "vm.prepare", vmId, spec: SPEC });
      for (let n = 0; !stop; n++) {
        await publish(n % 2 === 0 ? { type: "vm.start", vmId } : { type: "vm.stop", vmId });
        await sleep(20);
      }
    });
    await sleep(1_500);
    await h.server.kill("SIGKILL");
    await sleep(1_000);
    await h.server.restart();
    await sleep(2_000);
    await h.server.kill("SIGTERM");
    await sleep(500);
    await h.server.restart();
    await sleep(1_500);
    stop = true;
    await Promise.all(schedulers);
    assert.ok(confirmed.length > VMS * 5, `load was applied (${confirmed.length} commands)`);

    // Every confirmed command gets exactly one outcome.
    const byVm = new Map<string, { event: VmEvent }[]>();
    await eventually(
      async () => {
        for (let i = 0; i < VMS; i++) byVm.set(`nr-${i}`, await h.client.history("nr", `nr-${i}`));
        const outcomes = new Set(
          [...byVm.values()]
            .flat()
            .filter((e) => e.event.type !== "vm.command-accepted")
            .map((e) => e.event.causationId),
        );
        return confirmed.every((c) => outcomes.has(c.commandId)) ? true : undefined;
      },
      60_000,
      "every confirmed command has its outcome",
    );
    for (const c of confirmed) {
      const outs = (byVm.get(c.vmId) ?? []).filter(
        (e) => e.event.causationId === c.commandId && e.event.type !== "vm.command-accepted",
      );
      assert.equal(outs.length, 1, `${c.commandId} has exactly one outcome`);
    }
    assert.equal(worker.state, "running", "the worker never restarted itself");
    assert.ok(worker.connected);
  });
});
