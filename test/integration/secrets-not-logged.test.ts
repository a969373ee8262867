/**
 * Secrets stay out of logs: `vmq worker` at debug level, configured with a password, a token,
 * an nkey seed or a credentials file (flags and environment variables), runs commands whose
 * cloud-init user data holds a secret; none of those values appears in its output or in its
 * host record.
 */
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { createUser } from "@nats-io/nkeys";
import { Kvm } from "@nats-io/kv";
import { VmqClient } from "../../src/client/index.js";
import { names as namesFor } from "../../src/contracts/index.js";
import { connectNats, type ConnectionConfig } from "../../src/worker/nats/connect.js";
import { makeJwt, usersConfig } from "../helpers/nats-auth.js";
import { NatsServer, testPrefix } from "../helpers/nats-server.js";
import { SPEC, eventually } from "../helpers/worker-harness.js";
import { WorkerProcess } from "../helpers/worker-process.js";

interface Case {
  name: string;
  setup(dir: string): Promise<{
    config: string;
    auth: Omit<ConnectionConfig, "nats">;
    args: string[];
    env: Record<string, string>;
    secrets: string[];
  }>;
}

const USER_DATA_SECRET = "ud-S3CRET-9f8e7d";

const CASES: Case[] = [
  {
    name: "password (flag)",
    setup: () => {
      const password = "pw-S3CRET-41b2c3";
      return Promise.resolve({
        config: usersConfig([{ user: "vmq", password }]),
        auth: { user: "vmq", password },
        args: ["--user", "vmq", "--password", password],
        env: {},
        secrets: [password],
      });
    },
  },
  {
    name: "token (environment)",
    setup: () => {
      const token = "tok-S3CRET-77aa01";
      return Promise.resolve({
        config: `authorization { token: ${JSON.stringify(token)} }`,
        auth: { token },
        args: [],
        env: { VMQ_TOKEN: token },
        secrets: [token],
      });
    },
  },
  {
    name: "nkey seed file",
    setup: async (dir) => {
      const kp = createUser();
      const seed = new TextDecoder().decode(kp.getSeed());
      const file = join(dir, "worker.nk");
      await writeFile(file, seed, { mode: 0o600 });
      return {
        config: `authorization { users: [ { nkey: ${kp.getPublicKey()} } ] }`,
        auth: { nkeySeed: file },
        args: ["--nkey-seed", file],
        env: {},
        secrets: [seed, seed.slice(2, 30)],
      };
    },
  },
  {
    name: "credentials file",
    setup: async (dir) => {
      const jwt = await makeJwt();
      const file = await jwt.creds(join(dir, "worker.creds"), "worker");
      const text = await readFile(file, "utf8");
      const seed = /SU[A-Z2-7]{50,}/.exec(text)?.[0];
      assert.ok(seed, "the creds file holds a user seed");
      return {
        config: jwt.config,
        auth: { creds: file },
        args: [],
        env: { VMQ_CREDS: file },
        secrets: [seed, seed.slice(2, 30)],
      };
    },
  },
];

describe("secrets are never logged", { timeout: 180_000 }, () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "vmq-secrets-"));
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  for (const c of CASES) {
    it(`${c.name}: not in the debug log, nor in the host record`, async () => {
      const caseDir = await mkdtemp(join(dir, "case-"));
      const s = await c.setup(caseDir);
      const server = await NatsServer.start({ config: s.config });
      const prefix = testPrefix();
      const nc = await connectNats({ ...s.auth, nats: server.url }, "secrets-test");
      const w = new WorkerProcess(
        [
          "--nats",
          server.url,
          "--host",
          "h1",
          "--prefix",
          prefix,
          "--data-dir",
          join(caseDir, "data"),
          "--backend",
          "noop",
          "--log-level",
          "debug",
          "--heartbeat-ms",
          "500",
          ...s.args,
        ],
        s.env,
      ).start();
      let out = ""; // all of it (WorkerProcess keeps only the tail)
      w.proc?.all.on("data", (d: Buffer) => (out += d.toString()));
      try {
        const client = new VmqClient(nc, { prefix, timeoutMs: 30_000 });
        await eventually(
          async () => ((await client.hosts()).some((h) => h.host === "h1") ? true : undefined),
          30_000,
          `the worker's host record (output: ${w.output.slice(-500)})`,
        );
        const spec = { ...SPEC, cloudInit: { userData: `#cloud-config\n# ${USER_DATA_SECRET}\n` } };
        const r = await client.send("h1", { type: "vm.prepare", vmId: "s1", spec });
        assert.equal(r.outcome.type, "vm.prepared");
        // and once more as bad input, which is logged at warn with its reason
        await client.js.publish(
          namesFor(prefix).cmd("h1", "s2"),
          new TextEncoder().encode(
            JSON.stringify({ type: "vm.prepare", version: 1, vmId: "s2", spec }),
          ),
        );
        assert.equal(
          (await client.send("h1", { type: "vm.start", vmId: "s1" })).outcome.type,
          "vm.started",
        );
        const kv = await new Kvm(nc).open(namesFor(prefix).hostsBucket);
        const record = (await kv.get("h1"))?.string() ?? "";
        assert.ok(record.includes('"host":"h1"'), record);
        await w.kill("SIGTERM");
        console.log(`${c.name}: ${out.split("\n").length} log lines checked`);
        assert.match(out, /"level":20/, "the worker logged at debug level");
        assert.match(out, /"vmId":"s1"/, "the commands were logged");
        for (const secret of [...s.secrets, USER_DATA_SECRET]) {
          assert.ok(!out.includes(secret), `${secret} appears in the log:\n${out}`);
          assert.ok(!record.includes(secret), `${secret} appears in the host record`);
        }
      } finally {
        await w.kill("SIGKILL");
        await nc.close();
        await server.stop();
      }
    });
  }
});
