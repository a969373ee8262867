/**
 * Oversized input (issue 17, item 6): a command one byte under the server's max_payload
 * (1 MiB by default), to a valid and to an invalid vmId, ends with a clear publish error (the
 * commands stream's max_msg_size) or a DLQ entry cut to fit max_payload (size and digest in its
 * headers) — never a retry loop, and for an invalid vmId something is always recorded.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import {
  AckPolicy,
  DeliverPolicy,
  JetStreamApiError,
  jetstream,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
  type JetStreamManager,
  type StoredMsg,
} from "@nats-io/jetstream";
import { headers, type NatsConnection } from "@nats-io/transport-node";
import { VmqClient } from "../../src/client/index.js";
import {
  DLQ_HEADERS,
  MAX_COMMAND_MESSAGE_BYTES,
  names as namesFor,
  type Names,
} from "../../src/contracts/index.js";
import { ensureTopology } from "../../src/event-store/provision.js";
import { jetStreamDeadLetters } from "../../src/worker/nats/dead-letters.js";
import { runVmq } from "../helpers/cli.js";
import { NatsServer, testPrefix } from "../helpers/nats-server.js";
import { WorkerProcess } from "../helpers/worker-process.js";
import { eventually } from "../helpers/worker-harness.js";

const enc = new TextEncoder();
/** Log lines of a retry loop: none may appear. */
const RETRY_LINES = /retrying later|will be redelivered/g;

/** A command body (valid JSON, a real envelope) of exactly `size` bytes. */
function padded(vmId: string, size: number): Uint8Array {
  const body = {
    type: "vm.start",
    version: 1,
    commandId: `big-${vmId}`,
    vmId,
    issuedAt: new Date().toISOString(),
    pad: "",
  };
  body.pad = "x".repeat(size - JSON.stringify(body).length);
  const data = enc.encode(JSON.stringify(body));
  assert.equal(data.length, size);
  return data;
}

const sha256 = (d: Uint8Array): string => createHash("sha256").update(d).digest("hex");

/** The encoded size of a stored message's headers and body, as max_payload counts them. */
function messageBytes(m: StoredMsg): number {
  let h = "NATS/1.0\r\n".length + 2;
  for (const [k, vs] of m.header ?? []) for (const v of vs) h += k.length + v.length + 4;
  return h + m.data.length;
}

describe(
  "oversized input: refused at the door or dead-lettered cut to fit",
  { timeout: 180_000 },
  () => {
    let server: NatsServer;
    let nc: NatsConnection;
    let jsm: JetStreamManager;
    let dir: string;
    let maxPayload: number;
    const workers: WorkerProcess[] = [];

    /** A `vmq worker` process for host h1 of `prefix`, with its whole output counted for retries. */
    const startWorker = async (prefix: string, extra: string[] = []) => {
      const w = new WorkerProcess([
        ...["--nats", server.url, "--prefix", prefix, "--host", "h1"],
        ...["--data-dir", join(dir, prefix), "--heartbeat-ms", "300", "--log-level", "info"],
        ...extra,
      ]).start();
      workers.push(w);
      const log = { text: "", retries: () => log.text.match(RETRY_LINES)?.length ?? 0 };
      w.proc?.all.on("data", (d: Buffer) => (log.text += d.toString()));
      const client = new VmqClient(nc, { prefix, timeoutMs: 15_000 });
      await eventually(
        async () => (await client.hosts()).find((x) => x.host === "h1" && x.state === "running"),
        30_000,
        "worker ready",
      );
      return { w, log, client };
    };

    /** The DLQ entries of `names` by subject, once there are `count`. */
    const dlqEntries = async (n: Names, count: number) =>
      eventually(
        async () => {
          const { state } = await jsm.streams.info(n.dlqStream);
          if (state.messages < count) return undefined;
          const out = new Map<string, StoredMsg>();
          for (let seq = state.first_seq; seq <= state.last_seq; seq++) {
            const m = await jsm.streams.getMessage(n.dlqStream, { seq }).catch(() => null);
            if (m) out.set(m.subject, m);
          }
          return out;
        },
        30_000,
        `${count} DLQ entries`,
      );

    /** A DLQ entry holding a cut copy of `original`: said in its headers, within max_payload. */
    const assertCutCopy = (m: StoredMsg | undefined, original: Uint8Array, code: string) => {
      assert.ok(m, "dead-lettered");
      assert.equal(m.header?.get(DLQ_HEADERS.code), code);
      assert.equal(m.header?.get(DLQ_HEADERS.truncated), "payload");
      assert.equal(m.header?.get(DLQ_HEADERS.size), String(original.length));
      assert.equal(m.header?.get(DLQ_HEADERS.sha256), sha256(original));
      assert.ok(
        m.data.length > 0 && m.data.length < original.length,
        `kept ${m.data.length} bytes`,
      );
      assert.deepEqual(m.data, original.subarray(0, m.data.length), "a prefix of the command");
      assert.ok(messageBytes(m) <= maxPayload, `${messageBytes(m)} bytes within ${maxPayload}`);
    };

    before(async () => {
      server = await NatsServer.start();
      nc = await server.connect();
      jsm = await jetstreamManager(nc);
      maxPayload = nc.info?.max_payload ?? 0;
      assert.equal(maxPayload, 1024 * 1024, "the server's default max_payload");
      dir = await mkdtemp(join(tmpdir(), "vmq-oversized-"));
    });
    after(async () => {
      for (const w of workers) await w.kill();
      await nc?.close();
      await server?.stop();
      await rm(dir, { recursive: true, force: true });
    });

    it("a stream the worker provisioned refuses 1 MiB - 1 byte at publish, for a valid and an invalid vmId", async () => {
      const prefix = testPrefix();
      const n = namesFor(prefix);
      const { log } = await startWorker(prefix);
      const { config } = await jsm.streams.info(n.commandsStream);
      assert.equal(config.max_msg_size, MAX_COMMAND_MESSAGE_BYTES);
      for (const vmId of ["big", "_bad"]) {
        // No msgID header: the body alone is one byte under max_payload (the client checks too).
        await assert.rejects(
          jetstream(nc).publish(n.cmd("h1", vmId), padded(vmId, maxPayload - 1)),
          (e: unknown) => e instanceof JetStreamApiError && e.code === 10054,
          `${vmId}: refused by the stream at once`,
        );
      }
      assert.equal((await jsm.streams.info(n.commandsStream)).state.messages, 0, "nothing stored");
      await sleep(1_000);
      assert.equal(
        (await jsm.streams.info(n.dlqStream)).state.messages,
        0,
        "nothing to dead-letter",
      );
      assert.equal(log.retries(), 0, log.text);
    });

    it("a stream from before the limit: its oversized commands are dead-lettered cut to fit, once; the limit is then set", async () => {
      const prefix = testPrefix();
      const n = namesFor(prefix);
      // The commands stream as an older vmq made it: no max_msg_size.
      await jsm.streams.add({
        name: n.commandsStream,
        subjects: [`${prefix}.cmd.>`],
        retention: RetentionPolicy.Limits,
        storage: StorageType.File,
      });
      const big = padded("big", maxPayload - 1);
      const bad = padded("_bad", maxPayload - 1);
      await jetstream(nc).publish(n.cmd("h1", "big"), big);
      await jetstream(nc).publish(n.cmd("h1", "_bad"), bad);
      const { log, client } = await startWorker(prefix);
      const dlq = await dlqEntries(n, 2);
      assertCutCopy(dlq.get(n.dlq("h1", "big")), big, "command::too-large");
      assertCutCopy(dlq.get(n.dlq("h1", "_invalid")), bad, "command::too-large");
      // The valid vmId also has its rejection recorded; the invalid one has its DLQ entry.
      const history = await client.history("h1", "big");
      assert.deepEqual(
        history.map(({ event }) => [event.type, "code" in event ? event.code : undefined]),
        [["vm.command-rejected", "command::too-large"]],
      );
      // The worker brought the stream to the limit: the next one is refused at publish.
      assert.equal(
        (await jsm.streams.info(n.commandsStream)).config.max_msg_size,
        MAX_COMMAND_MESSAGE_BYTES,
      );
      await assert.rejects(jetstream(nc).publish(n.cmd("h1", "big"), big), /exceeds maximum/);
      await sleep(2_000);
      assert.equal((await jsm.streams.info(n.dlqStream)).state.messages, 2, "one copy each");
      assert.equal(log.retries(), 0, log.text);

      // The CLI: a cut copy cannot be retried as it is; an oversized --payload gets the code.
      const seq = dlq.get(n.dlq("h1", "big"))!.seq;
      const vmq = (args: string[]) =>
        runVmq([...args, "--nats", server.url, "--prefix", prefix], { timeout: 30_000 });
      const cut = await vmq(["dlq", "retry", String(seq)]);
      assert.notEqual(cut.exitCode, 0);
      assert.match(cut.stderr, /truncated.*\[dlq::still-invalid\]/);
      const file = join(dir, "big.json");
      await writeFile(file, padded("big", 100_000));
      const forced = await vmq(["dlq", "retry", String(seq), "--payload", file, "--force"]);
      assert.notEqual(forced.exitCode, 0);
      assert.match(forced.stderr, /\[command::too-large\]/);
      assert.equal((await jsm.streams.info(n.dlqStream)).state.messages, 2, "the entry stays");
    });

    it("exhausted deliveries of 1 MiB - 1 byte commands: the mover dead-letters each once, cut to fit", async () => {
      const prefix = testPrefix();
      const n = namesFor(prefix);
      await jsm.streams.add({
        name: n.commandsStream,
        subjects: [`${prefix}.cmd.>`],
        retention: RetentionPolicy.Limits,
        storage: StorageType.File,
      });
      await ensureTopology(nc, jsm, n); // the other streams, and the advisories captured
      const big = padded("big", maxPayload - 1);
      const bad = padded("_bad", maxPayload - 1);
      await jetstream(nc).publish(n.cmd("h1", "big"), big);
      await jetstream(nc).publish(n.cmd("h1", "_bad"), bad);
      // A worker that took them twice and died each time: JetStream gives up on both.
      await jsm.consumers.add(n.commandsStream, {
        durable_name: n.durable("h1"),
        filter_subject: n.cmdFilter("h1"),
        ack_policy: AckPolicy.Explicit,
        deliver_policy: DeliverPolicy.All,
        ack_wait: 1_000_000_000,
        max_deliver: 2,
        max_ack_pending: 2048,
      });
      const consumer = await jetstream(nc).consumers.get(n.commandsStream, n.durable("h1"));
      for (let round = 0; round < 2; round++) {
        const got = [];
        for await (const m of await consumer.fetch({ max_messages: 2, expires: 3_000 })) {
          got.push(m.seq);
          if (got.length === 2) break;
        }
        assert.equal(got.length, 2, `delivery ${round + 1} of both`);
        await sleep(1_200); // past ack_wait, unacked
      }
      const { log } = await startWorker(prefix, ["--max-deliver", "2", "--ack-wait-ms", "1000"]);
      const dlq = await dlqEntries(n, 2);
      assertCutCopy(dlq.get(n.dlq("h1", "big")), big, "command::max-deliveries");
      assertCutCopy(dlq.get(n.dlq("h1", "_invalid")), bad, "command::max-deliveries");
      await sleep(2_000);
      assert.equal((await jsm.streams.info(n.dlqStream)).state.messages, 2, "one copy each");
      assert.equal(log.retries(), 0, log.text);
    });

    it("a DLQ copy whose own headers would not fit drops them too, and says so", async () => {
      const n = namesFor(testPrefix());
      await ensureTopology(nc, jsm, n);
      const dl = jetStreamDeadLetters(jetstream(nc), n, "h1", () => maxPayload);
      const h = headers();
      h.set("Nats-Msg-Id", "c-1");
      h.set("X-Huge", "y".repeat(300_000));
      const data = padded("v1", 700_000);
      await dl.put({
        subject: n.cmd("h1", "v1"),
        data,
        headers: h,
        streamSeq: 7,
        code: "command::too-large",
        reason: "test",
        attempts: 1,
      });
      // A small one is copied byte for byte, its headers kept, nothing said about truncation.
      const small = enc.encode('{"small":true}');
      const smallHeaders = headers();
      smallHeaders.set("Nats-Msg-Id", "c-1");
      await dl.put({
        subject: n.cmd("h1", "v2"),
        data: small,
        headers: smallHeaders,
        streamSeq: 8,
        code: "command::not-json",
        reason: "test",
        attempts: 1,
      });
      const dlq = await dlqEntries(n, 2);
      const cut = dlq.get(n.dlq("h1", "v1"));
      assert.equal(cut?.header?.get(DLQ_HEADERS.truncated), "headers");
      assert.equal(cut?.header?.get("X-Huge"), "", "the command's own headers are not kept");
      assert.deepEqual(cut?.data, data, "the body fits once the headers are gone");
      assert.equal(cut?.header?.get(DLQ_HEADERS.sha256), sha256(data));
      const whole = dlq.get(n.dlq("h1", "v2"));
      assert.deepEqual(whole?.data, small);
      assert.equal(whole?.header?.get(DLQ_HEADERS.truncated), "");
      assert.equal(whole?.header?.get(`${DLQ_HEADERS.originalPrefix}Nats-Msg-Id`), "c-1");
    });
  },
);
