/**
 * A generated corpus of hostile commands (fast-check) published to the real command subjects of
 * a real nats-server, with valid commands interleaved. Every bad command must be rejected with
 * the parser's stable code, be dead-lettered exactly once, and never reach the backend; the
 * valid ones must still complete; replays of old commandIds must have no effect at all.
 * worker-bad-input.test.ts covers one hand-written case per code; this covers the space.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import fc from "fast-check";
import { jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { isValidId, parseCommand, type CommandInput } from "../../src/contracts/index.js";
import type { Worker } from "../../src/worker/worker.js";
import { AckAdvisories } from "../helpers/ack-advisories.js";
import { Harness, SPEC, eventually, type TestNoop } from "../helpers/worker-harness.js";

import {
  HOSTILE_POOL,
  REPLAY_VMS,
  SEED,
  VALID_VMS,
  corpus,
  json,
  readStream,
  valid,
  type Json,
} from "../helpers/hostile-corpus.js";

describe("hostile input: a generated corpus of bad commands", { timeout: 180_000 }, () => {
  let h: Harness;
  let worker: Worker;
  let noop: TestNoop;
  let jsm: JetStreamManager;
  let adv: AckAdvisories;
  before(async () => {
    h = await Harness.start();
    adv = await AckAdvisories.watch(
      h.nc,
      h.client.names.commandsStream,
      h.client.names.durable("h1"),
    );
    ({ worker, noop } = await h.worker());
    jsm = await jetstreamManager(h.nc);
  });
  after(async () => {
    adv.close();
    await h.stop();
  });

  it("rejects and dead-letters every bad command with its stable code, never touches the backend, and keeps serving valid commands; replayed commandIds have no effect", async () => {
    const began = Date.now();
    // History to replay: VMs prepared and started before the storm.
    const replayable: Json[] = [];
    for (let i = 0; i < REPLAY_VMS; i++) {
      for (const type of ["vm.prepare", "vm.start"] as const) {
        const c = valid(type, `rp-${i}`);
        if (type === "vm.prepare") c.spec = SPEC;
        const r = await h.client.send("h1", c as unknown as CommandInput);
        assert.notEqual(r.outcome.type, "vm.command-rejected", JSON.stringify(r.outcome));
        replayable.push(c);
      }
    }
    const callsBefore = noop.calls.length;
    const historyBefore = new Map<string, number>();
    for (let i = 0; i < REPLAY_VMS; i++)
      historyBefore.set(`rp-${i}`, (await h.client.history("h1", `rp-${i}`)).length);

    const bad = corpus();
    const expected = new Map<number, { code: string; token: string; category: string }>();
    const byCategory = new Map<string, number>();
    const codes = new Map<string, number>();
    const validRuns: Promise<void>[] = [];
    let nextValid = 0;
    const replays = fc.sample(
      fc.tuple(
        fc.constantFrom(...replayable),
        fc.constantFrom<"same" | "destroy" | "stop">("same", "destroy", "stop"),
      ),
      { numRuns: 200, seed: SEED },
    );
    const replayEvery = Math.floor(bad.length / replays.length);
    for (let i = 0; i < bad.length; i++) {
      const b = bad[i]!;
      const p = parseCommand(b.raw, b.token);
      assert.ok(!p.ok, `the generator made a valid command: ${Buffer.from(b.raw).toString()}`);
      const ack = await h.client.js.publish(h.client.names.cmd("h1", b.token), b.raw, {
        timeout: 10_000,
      });
      expected.set(ack.seq, { code: p.code, token: b.token, category: b.category });
      byCategory.set(b.category, (byCategory.get(b.category) ?? 0) + 1);
      codes.set(p.code, (codes.get(p.code) ?? 0) + 1);
      if (i % Math.ceil(bad.length / VALID_VMS) === 0 && nextValid < VALID_VMS) {
        const vmId = `ok-${nextValid++}`;
        validRuns.push(
          (async () => {
            const a = await h.client.send("h1", { type: "vm.prepare", vmId, spec: SPEC });
            assert.equal(a.outcome.type, "vm.prepared", `${vmId}: ${JSON.stringify(a.outcome)}`);
            const s = await h.client.send("h1", { type: "vm.start", vmId });
            assert.equal(s.outcome.type, "vm.started", `${vmId}: ${JSON.stringify(s.outcome)}`);
          })(),
        );
      }
      if (i % replayEvery === 0 && replays.length) {
        // an old commandId again, byte for byte or with another type; no Nats-Msg-Id, so
        // JetStream's duplicate window does not catch it: the worker's history must.
        const [orig, how] = replays.pop()!;
        const body =
          how === "same"
            ? orig
            : how === "destroy"
              ? { ...orig, type: "vm.destroy", spec: undefined, timeoutMs: 1000 }
              : { ...orig, type: "vm.stop", spec: undefined, timeoutMs: 0, force: "now" };
        await h.client.js.publish(h.client.names.cmd("h1", orig.vmId as string), json(body));
      }
    }
    const replayed = 200 - replays.length;
    console.log(
      `hostile corpus: seed ${SEED}, ${bad.length} bad commands (${[...byCategory].map(([k, v]) => `${k} ${v}`).join(", ")}); codes: ${[...codes].map(([k, v]) => `${k} ${v}`).join(", ")}; ${replayed} replays; ${VALID_VMS * 2} valid commands interleaved; published in ${Date.now() - began} ms`,
    );

    await Promise.all(validRuns);
    const dlqCount = await eventually(
      async () => {
        const n = (await jsm.streams.info(h.client.names.dlqStream)).state.messages;
        return n >= bad.length ? n : undefined;
      },
      90_000,
      "every bad command in the DLQ",
    );
    // Each bad command was terminated on its first delivery, never nak'd: the DLQ copies and
    // rejections are de-duplicated, so they alone would not show a redelivery.
    for (const seq of expected.keys()) await adv.terminatedOnce(seq, 10_000);
    await eventually(
      async () => {
        const c = await jsm.consumers.info(h.client.names.commandsStream, "worker-h1");
        return c.num_pending === 0 && c.num_ack_pending === 0 ? true : undefined;
      },
      30_000,
      "the command consumer drained",
    );
    assert.equal(dlqCount, bad.length, "one DLQ copy per bad command, no more");
    assert.equal(worker.state, "running", "the worker never crashed");

    // DLQ: each copy carries the parser's code for that command, under the right subject
    const dlq = await readStream(jsm, h.client.names.dlqStream);
    const seen = new Set<number>();
    for (const d of dlq) {
      const e = expected.get(d.cmdSeq ?? -1);
      assert.ok(e, `a DLQ entry for command seq ${d.cmdSeq} that was not a bad command`);
      assert.ok(!seen.has(d.cmdSeq!), `two DLQ copies of command seq ${d.cmdSeq}`);
      seen.add(d.cmdSeq!);
      assert.equal(d.code, e.code, `${e.category}: code of command seq ${d.cmdSeq}`);
      assert.equal(
        d.subject,
        h.client.names.dlq("h1", isValidId(e.token) ? e.token : "_invalid"),
        `${e.category}: DLQ subject`,
      );
    }

    // Events: one vm.command-rejected with that code per bad command on a valid vmId
    const rejections = new Map<number, string>();
    for (const vmId of HOSTILE_POOL) {
      for (const { event } of await h.client.history("h1", vmId)) {
        assert.equal(event.type, "vm.command-rejected", `${vmId}: only rejections`);
        const seq = Number(event.eventId.split(":invalid:")[1]);
        assert.ok(!rejections.has(seq), `two rejections of command seq ${seq}`);
        rejections.set(seq, event.code);
      }
    }
    const wantRejections = [...expected].filter(([, e]) => isValidId(e.token));
    assert.equal(rejections.size, wantRejections.length, "one rejection per bad command");
    for (const [seq, e] of wantRejections) assert.equal(rejections.get(seq), e.code);

    // The backend: only the valid commands' calls; nothing for hostile or replayed VMs
    const hostileCalls = noop.calls.filter((c) => !/^(ok|rp)-\d+$/.test(c.vmId));
    assert.deepEqual(hostileCalls, [], "the backend was never touched for hostile input");
    const replayCalls = noop.calls.slice(callsBefore).filter((c) => c.vmId.startsWith("rp-"));
    assert.deepEqual(
      replayCalls.filter((c) => c.op !== "state" && c.op !== "guestIp"),
      [],
      "a replayed commandId has no second effect",
    );
    for (let i = 0; i < REPLAY_VMS; i++) {
      assert.equal(
        (await h.client.history("h1", `rp-${i}`)).length,
        historyBefore.get(`rp-${i}`),
        "a replayed commandId has no second outcome",
      );
    }
    assert.ok(worker.stats.duplicates >= replayed, "replays were seen as duplicates");
    console.log(`hostile corpus done in ${Date.now() - began} ms`);
  });
});
