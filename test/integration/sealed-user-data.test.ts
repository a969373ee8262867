/**
 * cloud-init user-data sealed to its host, end to end with real `vmq worker` processes (Noop
 * backend) on a real nats-server: a prepare whose user-data the SDK sealed to h1, one from an
 * old client in plaintext, one sealed to h2 but sent to h1, and one plaintext command that is
 * bad input. Then every stored byte is searched for the secrets: every file of the nats-server's
 * store (plaintext may remain only in the commands stream's own files, and does), both workers'
 * data dirs (host keys aside) and their complete logs; an events subscriber and a DLQ reader
 * see none either. The Noop backend's seed record holds the opened user-data: h1 opened it.
 * Then the key file: created 0600, reused on restart, refused when others may read it.
 */
import assert from "node:assert/strict";
import { chmod, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { after, before, describe, it } from "node:test";
import { jetstreamManager } from "@nats-io/jetstream";
import { createCurve, fromCurveSeed } from "@nats-io/nkeys";
import type { NatsConnection } from "@nats-io/transport-node";
import { sealSpecFor, VmqClient } from "../../src/client/index.js";
import { DLQ_HEADERS, names as namesFor, type HostRecord } from "../../src/contracts/index.js";
import { NatsServer, testPrefix } from "../helpers/nats-server.js";
import { SPEC, eventually } from "../helpers/worker-harness.js";
import { WorkerProcess } from "../helpers/worker-process.js";

/** One recognisable prefix, one secret per case, so each can be traced to where it may be. */
const SEALED = "SEKRIT-sealed-7c1e9a";
const PLAIN = "SEKRIT-plain-old-client-3b5d";
const WRONG = "SEKRIT-sealed-to-h2-sent-to-h1-91f0";
const BAD = "SEKRIT-plain-bad-input-5e2a";
const userData = (secret: string) => `#cloud-config\nchpasswd:\n  list: "root:${secret}"\n`;

interface Started {
  proc: WorkerProcess;
  log: () => string;
}

/** Every file under `dir` with its bytes. */
async function filesUnder(dir: string): Promise<{ path: string; bytes: Buffer }[]> {
  const out: { path: string; bytes: Buffer }[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!e.isFile()) continue;
    const path = join(e.parentPath, e.name);
    out.push({ path, bytes: await readFile(path) });
  }
  return out;
}

const found = (bytes: Buffer | string, secrets: string[]): string[] =>
  secrets.filter((s) => bytes.includes(s));

describe("user-data sealed to its host", { timeout: 180_000 }, () => {
  let dir: string;
  let server: NatsServer;
  let nc: NatsConnection;
  let client: VmqClient;
  const prefix = testPrefix();
  const names = namesFor(prefix);

  const startWorker = (host: string, extra: string[] = []): Started => {
    const proc = new WorkerProcess([
      "--nats",
      server.url,
      "--host",
      host,
      "--prefix",
      prefix,
      "--data-dir",
      join(dir, `data-${host}`),
      "--backend",
      "noop",
      "--noop-state-dir",
      join(dir, `noop-${host}`),
      "--log-level",
      "debug",
      "--heartbeat-ms",
      "300",
      ...extra,
    ]).start();
    let out = ""; // all of it (WorkerProcess keeps only the tail)
    proc.proc?.all.on("data", (d: Buffer) => (out += d.toString()));
    return { proc, log: () => out };
  };

  const hostRecord = (host: string, startedAfter = ""): Promise<HostRecord> =>
    eventually(
      async () =>
        (await client.hosts()).find(
          (h) => h.host === host && h.state === "running" && h.startedAt > startedAfter,
        ),
      30_000,
      `${host}'s host record`,
    );

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "vmq-sealed-"));
    server = await NatsServer.start();
    nc = await server.connect();
    client = new VmqClient(nc, { prefix, timeoutMs: 30_000 });
  });
  after(async () => {
    await nc?.close();
    await server?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it("no plaintext in events, the DLQ, snapshots, the view, logs or another host; the seed has it", async () => {
    const h1 = startWorker("h1");
    const h2 = startWorker("h2");
    let serverStopped = false;
    try {
      const [r1, r2] = await Promise.all([hostRecord("h1"), hostRecord("h2")]);
      assert.match(r1.userDataKey ?? "", /^X[A-Z2-7]{55}$/, "h1 publishes its key");
      assert.notEqual(r1.userDataKey, r2.userDataKey, "each host has its own key");

      // 1. The SDK seals to the host it sends to.
      const spec = (secret: string) => ({ ...SPEC, cloudInit: { userData: userData(secret) } });
      const sealed = await client.prepare("v-sealed", spec(SEALED), { host: "h1" });
      assert.equal(sealed.outcome.type, "vm.prepared");
      // 2. An old client sends plaintext.
      const plain = await client.send("h1", {
        type: "vm.prepare",
        vmId: "v-plain",
        spec: spec(PLAIN),
      });
      assert.equal(plain.outcome.type, "vm.prepared");
      // 3. Sealed to h2, sent to h1: rejected and dead-lettered.
      const toH2 = await sealSpecFor(() => client.hosts(), "h2", spec(WRONG));
      const wrong = await client.send("h1", { type: "vm.prepare", vmId: "v-wrong", spec: toH2 });
      assert.equal(wrong.outcome.type, "vm.command-rejected");
      assert.equal("code" in wrong.outcome && wrong.outcome.code, "userdata::wrong-host");
      // 4. Plaintext in a command that is bad input (vcpus out of range): dead-lettered.
      await client.js.publish(
        names.cmd("h1", "v-bad"),
        JSON.stringify({
          type: "vm.prepare",
          version: 1,
          commandId: "bad-1",
          vmId: "v-bad",
          issuedAt: new Date().toISOString(),
          spec: { ...spec(BAD), vcpus: 999 },
        }),
      );

      // The worker opened what was sealed to it, for the backend's seed only.
      const seed = (vmId: string) => readFile(join(dir, "noop-h1", `${vmId}.user-data`), "utf8");
      assert.equal(await seed("v-sealed"), userData(SEALED), "the seed holds the opened user-data");
      assert.equal(await seed("v-plain"), userData(PLAIN));
      await assert.rejects(seed("v-wrong"), { code: "ENOENT" }, "nothing prepared for v-wrong");

      // A scheduler reading the DLQ: both dead letters, neither with plaintext.
      const jsm = await jetstreamManager(nc);
      const dlq = await eventually(async () => {
        const n = (await jsm.streams.info(names.dlqStream)).state.messages;
        return n >= 2 ? n : undefined;
      }, 15_000);
      const letters = await Promise.all(
        Array.from({ length: dlq }, async (_, i) => {
          const m = await jsm.streams.getMessage(names.dlqStream, { seq: i + 1 });
          assert.ok(m, `DLQ message ${i + 1}`);
          return m;
        }),
      );
      const codes = letters.map((m) => m.header.get(DLQ_HEADERS.code)).sort();
      assert.deepEqual(codes, ["command::invalid", "userdata::wrong-host"]);
      const badLetter = letters.find((m) => m.header.get(DLQ_HEADERS.code) === "command::invalid");
      assert.equal(badLetter?.header.get(DLQ_HEADERS.userData), "withheld");
      assert.match(badLetter?.string() ?? "", /"userDataDigest":"sha256:[0-9a-f]{64}"/);
      for (const m of letters)
        assert.deepEqual(found(Buffer.from(m.data), [SEALED, PLAIN, WRONG, BAD]), []);

      // A subscriber to the events stream: every event of both hosts, as stored, and as read.
      const info = (await jsm.streams.info(names.eventsStream)).state;
      const raw: string[] = [];
      for (let seq = info.first_seq; seq <= info.last_seq; seq++)
        raw.push((await jsm.streams.getMessage(names.eventsStream, { seq }))?.string() ?? "");
      for await (const e of client.watch({}, { toEnd: true })) raw.push(JSON.stringify(e));
      const all = raw.join("\n");
      assert.match(all, /"sealedUserData":\{"alg":"xkv1"/, "the sealed blob is recorded");
      assert.match(all, /"userDataDigest":"sha256:/, "plaintext is recorded as a digest");
      assert.deepEqual(found(all, [SEALED, PLAIN, WRONG, BAD]), [], "no event holds plaintext");

      // Snapshots are written by a clean drain.
      await Promise.all([h1.proc.kill("SIGTERM"), h2.proc.kill("SIGTERM")]);
      await server.kill("SIGTERM"); // its store, flushed, is searched below
      serverStopped = true;
      const seeds = await Promise.all(
        ["h1", "h2"].map(async (h) =>
          (await readFile(join(dir, `data-${h}`, "host.xk"), "utf8")).trim(),
        ),
      );

      // Every file of the store: plaintext only in the commands stream's own files.
      const commandsDir = `/streams/${names.commandsStream}/`;
      let inCommands = "";
      let searched = 0;
      let snapshots = 0;
      for (const f of await filesUnder(server.storeDir)) {
        searched++;
        if (
          f.path.includes(`/streams/KV_${names.snapshotsBucket}/`) &&
          f.bytes.includes("v-sealed")
        )
          snapshots++;
        const hits = found(f.bytes, [SEALED, PLAIN, WRONG, BAD, ...seeds]);
        if (f.path.includes(commandsDir)) {
          inCommands += hits.join(" ");
          assert.deepEqual(
            hits.filter((s) => s !== PLAIN && s !== BAD),
            [],
            f.path,
          );
        } else assert.deepEqual(hits, [], `plaintext in ${relative(server.storeDir, f.path)}`);
      }
      assert.ok(searched > 10, `${searched} files searched`);
      assert.ok(snapshots > 0, "the drain wrote snapshots of the VMs, searched too");
      assert.ok(
        inCommands.includes(PLAIN) && inCommands.includes(BAD),
        "the commands stream keeps what old clients sent",
      );
      // The workers' data dirs (keys aside) and their logs.
      for (const h of ["h1", "h2"])
        for (const f of await filesUnder(join(dir, `data-${h}`)))
          if (!f.path.endsWith("host.xk"))
            assert.deepEqual(found(f.bytes, [SEALED, PLAIN, WRONG, BAD, ...seeds]), [], f.path);
      for (const [w, what] of [
        [h1, "h1"],
        [h2, "h2"],
      ] as const) {
        assert.match(w.log(), /"level":20/, `${what} logged at debug level`);
        assert.deepEqual(
          found(w.log(), [SEALED, PLAIN, WRONG, BAD, ...seeds]),
          [],
          `${what}'s log`,
        );
      }
      assert.match(h1.log(), /"code":"userdata::wrong-host"/, "h1 logged the rejection's code");
    } finally {
      await Promise.all([h1.proc.kill("SIGKILL"), h2.proc.kill("SIGKILL")]);
      if (serverStopped) {
        await server.restart();
        await nc.close();
        nc = await server.connect();
        client = new VmqClient(nc, { prefix, timeoutMs: 30_000 });
      }
    }
  });

  it("the key file: created 0600, reused on restart, refused when others may read it", async () => {
    const file = join(dir, "data-k1", "host.xk");
    let w = startWorker("k1");
    try {
      const first = await hostRecord("k1");
      const mode = (await stat(file)).mode & 0o777;
      assert.equal(mode, 0o600, `created mode ${mode.toString(8)}`);
      const kp = fromCurveSeed(new TextEncoder().encode((await readFile(file, "utf8")).trim()));
      assert.equal(first.userDataKey, kp.getPublicKey(), "the record publishes the file's key");
      await w.proc.kill("SIGTERM");

      w = startWorker("k1");
      const again = await hostRecord("k1", first.startedAt);
      assert.equal(again.userDataKey, first.userDataKey, "the same key after a restart");
      await w.proc.kill("SIGTERM");

      await chmod(file, 0o644);
      w = startWorker("k1");
      assert.equal(await w.proc.exit(), 1);
      assert.match(w.log(), /hostkey::insecure-file/);
      assert.doesNotMatch(w.log(), /worker running/);

      // Given by file: that key, and a file that does not hold a curve seed is refused.
      const given = join(dir, "given.xk");
      const mine = createCurve();
      await writeFile(given, new TextDecoder().decode(mine.getSeed()), { mode: 0o600 });
      w = startWorker("k2", ["--host-key-file", given]);
      assert.equal((await hostRecord("k2")).userDataKey, mine.getPublicKey());
      await w.proc.kill("SIGTERM");
      await writeFile(given, "not a seed\n", { mode: 0o600 });
      w = startWorker("k2", ["--host-key-file", given]);
      assert.equal(await w.proc.exit(), 1);
      assert.match(w.log(), /hostkey::invalid/);
      assert.doesNotMatch(w.log(), /not a seed/, "the file's content is never quoted");
    } finally {
      await w.proc.kill("SIGKILL");
    }
  });
});
