/**
 * The worker, not JetStream, makes a command run once. Two layers of JetStream de-duplication
 * could hide a worker that runs a command twice, so both are taken out of the way here:
 * - the commands stream's: the repeated command is stored again (no Nats-Msg-Id), so the worker
 *   really gets it a second time;
 * - the events stream's: the worker's event ids are deterministic (`<vmId>:<commandId>:accepted`
 *   and `:outcome`), so a second intent or outcome within the duplicate window would be dropped
 *   by JetStream without a word. This file's events stream has a window of 1 s (made before the
 *   worker provisions; the worker accepts an existing stream's window) and every repeat comes
 *   after it has passed, so a second intent or outcome would be stored and seen.
 * Each test checks its own VM: its history and the backend's calls for it, not global counters.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import {
  jetstreamManager,
  RetentionPolicy,
  StorageType,
  type JetStreamManager,
} from "@nats-io/jetstream";
import type { CommandBody } from "../../src/client/index.js";
import { Harness, SPEC, eventually, type TestNoop } from "../helpers/worker-harness.js";

const enc = new TextEncoder();
const WINDOW_MS = 1_000;
/** Past the events stream's duplicate window, with room for the server's purge timer. */
const pastWindow = () => sleep(2 * WINDOW_MS + 500);

describe("worker: idempotency by commandId, for ever", () => {
  let h: Harness;
  let noop: TestNoop;
  let jsm: JetStreamManager;
  before(async () => {
    h = await Harness.start();
    jsm = await jetstreamManager(h.nc);
    // The events stream as the worker makes it (src/event-store/provision.ts), but with a short
    // duplicate window.
    await jsm.streams.add({
      name: h.client.names.eventsStream,
      subjects: [`${h.prefix}.evt.>`],
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      max_age: 0,
      duplicate_window: WINDOW_MS * 1_000_000,
      allow_direct: true,
      deny_delete: true,
    });
    ({ noop } = await h.worker());
    const { config } = await jsm.streams.info(h.client.names.eventsStream);
    assert.equal(config.duplicate_window, WINDOW_MS * 1_000_000, "the worker kept the window");
  });
  after(async () => h.stop());

  /** The backend's effect calls for one VM, in order (state and address polls are not effects). */
  const effects = (vmId: string) =>
    noop.calls
      .filter((c) => c.vmId === vmId && c.op !== "state" && c.op !== "guestIp")
      .map((c) => c.op);

  /** The VM's events caused by one command, by type. */
  const eventsOf = async (vmId: string, commandId: string) =>
    (await h.client.history("h1", vmId))
      .filter((e) => e.event.causationId === commandId)
      .map((e) => e.event.type);

  /** Stores the command again, byte for byte, with no msgID: JetStream keeps both copies. */
  async function storeAgain(command: object, vmId: string): Promise<number> {
    const ack = await h.client.js.publish(
      h.client.names.cmd("h1", vmId),
      enc.encode(JSON.stringify(command)),
    );
    assert.equal(ack.duplicate, false, "the repeat is stored, so the worker gets it");
    return ack.seq;
  }

  /** Until the host's consumer has delivered and acked everything up to `seq`. */
  const processed = (seq: number) =>
    eventually(
      async () => {
        const c = await jsm.consumers.info(
          h.client.names.commandsStream,
          h.client.names.durable("h1"),
        );
        return c.ack_floor.stream_seq >= seq && c.num_ack_pending === 0 ? true : undefined;
      },
      15_000,
      `command seq ${seq} acked`,
    );

  async function sendOk(body: CommandBody, want: string) {
    const r = await h.client.send("h1", body);
    assert.equal(r.outcome.type, want, JSON.stringify(r.outcome));
    return r;
  }

  it("the same command delivered twice (stored twice, byte for byte) has one effect and one outcome", async () => {
    await sendOk({ type: "vm.prepare", vmId: "idem-1", spec: SPEC }, "vm.prepared");
    // A destroy is accepted in every state, destroyed too: only the worker's memory of the
    // commandId keeps its second delivery from destroying again.
    const { command } = await h.client.publish("h1", {
      type: "vm.destroy",
      vmId: "idem-1",
      timeoutMs: 1000,
    });
    await h.client.waitForOutcome("h1", "idem-1", command.commandId);
    assert.deepEqual(effects("idem-1"), ["prepare", "destroy"]);
    await pastWindow();

    const seq = await storeAgain(command, "idem-1");
    await processed(seq);

    assert.deepEqual(
      await eventsOf("idem-1", command.commandId),
      ["vm.command-accepted", "vm.destroyed"],
      "one intent and one outcome for the commandId",
    );
    assert.deepEqual(effects("idem-1"), ["prepare", "destroy"], "one destroy call");
  });

  it("re-published later (another Nats-Msg-Id), in a state that would accept it, it has no second effect or outcome", async () => {
    await sendOk({ type: "vm.prepare", vmId: "idem-2", spec: SPEC }, "vm.prepared");
    const start = await sendOk({ type: "vm.start", vmId: "idem-2" }, "vm.started");
    // Stopped, the VM would accept a start again: only the commandId tells it is old.
    await sendOk({ type: "vm.stop", vmId: "idem-2", timeoutMs: 1000 }, "vm.stopped");
    assert.deepEqual(effects("idem-2"), ["prepare", "start", "stop"]);
    await pastWindow();

    const seq = await storeAgain(
      {
        type: "vm.start",
        version: 1,
        commandId: start.commandId,
        vmId: "idem-2",
        issuedAt: new Date().toISOString(),
      },
      "idem-2",
    );
    await processed(seq);

    assert.deepEqual(
      await eventsOf("idem-2", start.commandId),
      ["vm.command-accepted", "vm.started"],
      "one intent and one outcome for the commandId",
    );
    assert.deepEqual(effects("idem-2"), ["prepare", "start", "stop"], "one start call");
    const last = (await h.client.history("h1", "idem-2")).at(-1)?.event;
    assert.equal(last?.type, "vm.stopped", "the VM stays stopped");
  });

  it("a repeat of a command that was rejected is not decided again", async () => {
    // Rejected on a new VM (not found); once the VM exists it would be accepted.
    const stop = await h.client.send("h1", { type: "vm.stop", vmId: "idem-3", timeoutMs: 1000 });
    assert.equal(stop.outcome.type, "vm.command-rejected");
    await sendOk({ type: "vm.prepare", vmId: "idem-3", spec: SPEC }, "vm.prepared");
    await sendOk({ type: "vm.start", vmId: "idem-3" }, "vm.started");
    await pastWindow();

    const seq = await storeAgain(
      {
        type: "vm.stop",
        version: 1,
        commandId: stop.commandId,
        vmId: "idem-3",
        issuedAt: new Date().toISOString(),
        timeoutMs: 1000,
      },
      "idem-3",
    );
    await processed(seq);

    assert.deepEqual(await eventsOf("idem-3", stop.commandId), ["vm.command-rejected"]);
    assert.deepEqual(effects("idem-3"), ["prepare", "start"], "no stop call");
  });
});
