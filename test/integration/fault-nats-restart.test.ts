import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { jetstreamManager } from "@nats-io/jetstream";
import type { CommandBody } from "../../src/client/index.js";
import type { VmEvent } from "../../src/contracts/index.js";
import type { Worker } from "../../src/worker/worker.js";
import { Harness, SPEC, eventually, type TestNoop } from "../helpers/worker-harness.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("fault: nats-server killed and restarted under load", { timeout: 180_000 }, () => {
  let h: Harness;
  let worker: Worker;
  let noop: TestNoop;
  before(async () => {
    h = await Harness.start();
    ({ worker, noop } = await h.worker({
      host: "nr",
      concurrency: 8,
      // Every call kept: the test counts them.
      noop: { latencyMs: 5, keepCalls: 1_000_000 },
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
    // Each command ran once: per VM, the backend was called exactly as often for each
    // operation as that operation's success outcome was recorded. Counted once the host's
    // consumer holds nothing (redeliveries included), so no second run is still on its way.
    const jsm = await jetstreamManager(h.nc);
    await eventually(
      async () => {
        const c = await jsm.consumers.info(
          h.client.names.commandsStream,
          h.client.names.durable("nr"),
        );
        return c.num_pending === 0 && c.num_ack_pending === 0 ? true : undefined;
      },
      60_000,
      "the host's consumer drained",
    );
    const OUTCOME = { prepare: "vm.prepared", start: "vm.started", stop: "vm.stopped" } as const;
    for (let i = 0; i < VMS; i++) {
      const vmId = `nr-${i}`;
      const history = await h.client.history("nr", vmId);
      const calls: Record<string, number> = {};
      const outcomes: Record<string, number> = {};
      for (const [op, type] of Object.entries(OUTCOME)) {
        calls[op] = noop.calls.filter((c) => c.vmId === vmId && c.op === op).length;
        outcomes[op] = history.filter((e) => e.event.type === type).length;
      }
      assert.deepEqual(calls, outcomes, `${vmId}: backend calls per operation vs. its outcomes`);
    }
    assert.equal(worker.state, "running", "the worker never restarted itself");
    assert.ok(worker.connected);
  });
});
