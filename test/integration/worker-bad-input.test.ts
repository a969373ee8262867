import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { headers } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { DLQ_HEADERS } from "../../src/contracts/index.js";
import { AckAdvisories } from "../helpers/ack-advisories.js";
import { Harness, SPEC, eventually } from "../helpers/worker-harness.js";

const enc = new TextEncoder();

describe("worker: bad input is rejected, dead-lettered and never blocks other VMs", () => {
  let h: Harness;
  let noopCalls: () => number;
  let adv: AckAdvisories;
  before(async () => {
    h = await Harness.start();
    adv = await AckAdvisories.watch(
      h.nc,
      h.client.names.commandsStream,
      h.client.names.durable("h1"),
    );
    const { noop } = await h.worker();
    noopCalls = () => noop.calls.length;
  });
  after(async () => {
    adv.close();
    await h.stop();
  });

  const good = (vmId: string, extra: Record<string, unknown> = {}) => ({
    type: "vm.start",
    version: 1,
    commandId: `c-${vmId}-${Math.random().toString(36).slice(2)}`,
    vmId,
    issuedAt: new Date().toISOString(),
    ...extra,
  });

  const cases: {
    name: string;
    vmId: string;
    body: () => Uint8Array;
    code: string;
    rejectedEvent: boolean;
    /** Tokens after the VM's own subject (`<prefix>.cmd.h1.<vmId>.<extra>`). */
    extraSubject?: string;
  }[] = [
    {
      name: "not JSON",
      vmId: "bad-json",
      body: () => enc.encode("{oops"),
      code: "command::not-json",
      rejectedEvent: true,
    },
    {
      name: "schema failure",
      vmId: "bad-schema",
      body: () =>
        enc.encode(
          JSON.stringify(good("bad-schema", { type: "vm.prepare", spec: { ...SPEC, vcpus: 0 } })),
        ),
      code: "command::invalid",
      rejectedEvent: true,
    },
    {
      name: "vmId differs from subject",
      vmId: "bad-subj",
      body: () => enc.encode(JSON.stringify(good("someone-else"))),
      code: "command::subject-mismatch",
      rejectedEvent: true,
    },
    {
      name: "oversized",
      vmId: "bad-big",
      // Over the body limit but within the stream's max_msg_size (a bigger one is refused at publish).
      body: () => enc.encode(JSON.stringify(good("bad-big", { pad: "x".repeat(66_000) }))),
      code: "command::too-large",
      rejectedEvent: true,
    },
    {
      name: "unknown type",
      vmId: "bad-type",
      body: () => enc.encode(JSON.stringify(good("bad-type", { type: "vm.teleport" }))),
      code: "command::unknown-type",
      rejectedEvent: true,
    },
    {
      name: "unknown version",
      vmId: "bad-ver",
      body: () => enc.encode(JSON.stringify(good("bad-ver", { version: 9 }))),
      code: "command::unsupported-version",
      rejectedEvent: true,
    },
    {
      name: "extra subject tokens after the vmId",
      vmId: "bad-tail",
      body: () => enc.encode(JSON.stringify(good("bad-tail"))),
      code: "command::subject-mismatch",
      rejectedEvent: false,
      extraSubject: "x",
    },
    {
      name: "no valid vmId at all",
      vmId: "",
      body: () => enc.encode("garbage"),
      code: "command::not-json",
      rejectedEvent: false,
    },
  ];

  for (const c of cases) {
    it(`${c.name}: ${c.code}, a DLQ copy with the reason, and the message is terminated`, async () => {
      const before = noopCalls();
      const subject =
        (c.vmId ? h.client.names.cmd("h1", c.vmId) : `${h.prefix}.cmd.h1._bad`) +
        (c.extraSubject ? `.${c.extraSubject}` : "");
      const hdr = headers();
      hdr.set("X-Trace", "t-1");
      const msgId = `m-${Math.random().toString(36).slice(2)}`;
      hdr.set("Nats-Msg-Id", msgId);
      const raw = c.body();
      const ack = await h.client.js.publish(subject, raw, { headers: hdr });
      const jsm = await jetstreamManager(h.nc);
      const dlqSubject = h.client.names.dlq("h1", c.vmId || "_invalid");
      const dl = await eventually(
        async () =>
          (await jsm.streams
            .getMessage(h.client.names.dlqStream, { last_by_subj: dlqSubject })
            .catch(() => null)) ?? undefined,
        10_000,
        "DLQ entry",
      );
      assert.deepEqual(
        Buffer.from(dl.data),
        Buffer.from(raw),
        "the DLQ holds the raw payload byte for byte",
      );
      assert.equal(dl.header.get(DLQ_HEADERS.code), c.code);
      assert.ok(dl.header.get(DLQ_HEADERS.reason).length > 5);
      assert.equal(dl.header.get(DLQ_HEADERS.streamSeq), String(ack.seq));
      assert.equal(dl.header.get("X-Trace"), "t-1", "original headers are kept");
      assert.equal(
        dl.header.get(`${DLQ_HEADERS.originalPrefix}Nats-Msg-Id`),
        msgId,
        "NATS's own headers too, renamed so they do not act on the DLQ",
      );
      if (c.rejectedEvent) {
        const hist = await eventually(async () => {
          const x = await h.client.history("h1", c.vmId);
          return x.length ? x : undefined;
        });
        const e = hist.at(-1)?.event;
        assert.equal(e?.type, "vm.command-rejected");
        if (e?.type === "vm.command-rejected") assert.equal(e.code, c.code);
      }
      assert.equal(noopCalls(), before, "the backend was never touched");
      // Terminated on its first delivery: the server's MSG_TERMINATED advisory for this message,
      // with deliveries 1, and no MSG_NAKED (a nak would also empty num_ack_pending in the end,
      // once its deliveries run out, and the DLQ copy and rejection are de-duplicated).
      assert.deepEqual(await adv.terminatedOnce(ack.seq, 10_000), [1]);
    });
  }

  it("a schema failure whose commandId is valid is the command's outcome for the scheduler", async () => {
    const body = good("bad-outcome", { type: "vm.stop", timeoutMs: -5 });
    await h.client.js.publish(
      h.client.names.cmd("h1", "bad-outcome"),
      enc.encode(JSON.stringify(body)),
    );
    const r = await h.client.waitForOutcome("h1", "bad-outcome", body.commandId, {
      timeoutMs: 10_000,
    });
    assert.equal(r.outcome.type, "vm.command-rejected");
    assert.equal(r.outcome.causationId, body.commandId);
  });

  it("a malformed re-publish of a commandId that has its outcome is dead-lettered, with no second outcome", async () => {
    const first = await h.client.send("h1", { type: "vm.prepare", vmId: "bad-again", spec: SPEC });
    const { commandId } = first;
    const jsm = await jetstreamManager(h.nc);
    const before = (await jsm.streams.info(h.client.names.dlqStream)).state.messages;
    // Same commandId, now with a bad field, and with another msgID so JetStream stores it.
    const hdrs = headers();
    hdrs.set("Nats-Msg-Id", `${commandId}-again`);
    const again = await h.client.js.publish(
      h.client.names.cmd("h1", "bad-again"),
      enc.encode(
        JSON.stringify(good("bad-again", { commandId, type: "vm.stop", timeoutMs: "soon" })),
      ),
      { headers: hdrs },
    );
    await eventually(async () =>
      (await jsm.streams.info(h.client.names.dlqStream)).state.messages > before ? true : undefined,
    );
    const outcomes = (await h.client.history("h1", "bad-again")).filter(
      (e) => e.event.causationId === commandId && e.event.type !== "vm.command-accepted",
    );
    assert.deepEqual(
      outcomes.map((e) => e.event.type),
      ["vm.prepared"],
      "exactly one outcome for the commandId",
    );
    await adv.terminatedOnce(again.seq, 10_000);
  });

  it("valid commands for other VMs complete while poison arrives in between", async () => {
    const sends = [];
    const poison: number[] = [];
    for (let i = 0; i < 20; i++) {
      const { seq } = await h.client.js.publish(
        h.client.names.cmd("h1", `poison-${i}`),
        enc.encode("\u0000not json"),
      );
      poison.push(seq);
      sends.push(h.client.send("h1", { type: "vm.prepare", vmId: `fine-${i}`, spec: SPEC }));
    }
    const results = await Promise.all(sends);
    assert.ok(results.every((r) => r.outcome.type === "vm.prepared"));
    for (const seq of poison) await adv.terminatedOnce(seq, 10_000);
  });
});
