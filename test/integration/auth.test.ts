/**
 * Authentication against real nats-server processes: user/password, token, nkey seed,
 * credentials file (operator/account/user JWTs on a memory resolver) and TLS with a private CA
 * and client certificates; the SDK and the worker (in-process and as a real `vmq worker`
 * process) run commands over each. Wrong credentials and an untrusted CA fail fast and clearly.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { execa } from "execa";
import { createUser } from "@nats-io/nkeys";
import type { NatsConnection } from "@nats-io/transport-node";
import { VmqClient } from "../../src/client/index.js";
import { HypervisorRouter, NoopBackend } from "../../src/hypervisor/index.js";
import { silentLogger } from "../../src/observability/logger.js";
import { connectNats, type ConnectionConfig } from "../../src/worker/connect.js";
import { Worker } from "../../src/worker/worker.js";
import { makeJwt, makeTls, tlsConfig, usersConfig, type TlsFiles } from "../helpers/nats-auth.js";
import { NatsServer, testPrefix } from "../helpers/nats-server.js";
import { SPEC, eventually } from "../helpers/worker-harness.js";
import { WorkerProcess } from "../helpers/worker-process.js";

const ROOT = join(import.meta.dirname, "..", "..");

/** Connection settings as flags of `vmq worker` (the same names as the config fields). */
function flags(c: Omit<ConnectionConfig, "nats">): string[] {
  const out: string[] = [];
  const map: [keyof typeof c, string][] = [
    ["creds", "--creds"],
    ["nkeySeed", "--nkey-seed"],
    ["user", "--user"],
    ["password", "--password"],
    ["token", "--token"],
    ["tlsCa", "--tls-ca"],
    ["tlsCert", "--tls-cert"],
    ["tlsKey", "--tls-key"],
  ];
  for (const [k, f] of map) if (c[k] !== undefined) out.push(f, String(c[k]));
  return out;
}

interface Case {
  name: string;
  /** Server config text and the client/worker settings, made in `dir`. */
  setup(dir: string): Promise<{ config: string; auth: Omit<ConnectionConfig, "nats"> }>;
  /** Also run the worker as a real `vmq worker` process with these settings as flags. */
  process?: boolean;
}

/** `vmq hosts` as an operator runs it, with connection settings from the environment. */
const cliHosts = (env: Record<string, string>) =>
  execa(process.execPath, ["--import", "tsx", join(ROOT, "src/cli/main.ts"), "hosts"], {
    reject: false,
    cwd: ROOT,
    timeout: 30_000,
    env,
  });

let tls: TlsFiles | undefined;
const tlsFiles = async (dir: string) => (tls ??= await makeTls(dir));

const CASES: Case[] = [
  {
    name: "user/password",
    process: true,
    setup: () =>
      Promise.resolve({
        config: usersConfig([{ user: "vmq", password: "s3cret-pass" }]),
        auth: { user: "vmq", password: "s3cret-pass" },
      }),
  },
  {
    name: "token",
    setup: () =>
      Promise.resolve({
        config: `authorization { token: "t0ken-value" }`,
        auth: { token: "t0ken-value" },
      }),
  },
  {
    name: "nkey seed",
    setup: async (dir) => {
      const kp = createUser();
      const seedFile = join(dir, "user.nk");
      await writeFile(seedFile, new TextDecoder().decode(kp.getSeed()), { mode: 0o600 });
      return {
        config: `authorization { users: [ { nkey: ${kp.getPublicKey()} } ] }`,
        auth: { nkeySeed: seedFile },
      };
    },
  },
  {
    name: "credentials file (operator/account/user JWTs)",
    process: true,
    setup: async (dir) => {
      const jwt = await makeJwt();
      return { config: jwt.config, auth: { creds: await jwt.creds(join(dir, "u.creds"), "u") } };
    },
  },
  {
    name: "TLS with a private CA and a client certificate",
    process: true,
    setup: async (dir) => {
      const t = await tlsFiles(dir);
      return {
        config: tlsConfig(t),
        auth: { tlsCa: t.caCert, tlsCert: t.clientCert, tlsKey: t.clientKey },
      };
    },
  },
];

describe("authentication: every supported method, SDK and worker", { timeout: 240_000 }, () => {
  let dir: string;
  let tlsDir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "vmq-auth-"));
    tlsDir = await mkdtemp(join(tmpdir(), "vmq-tls-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
    await rm(tlsDir, { recursive: true, force: true });
  });

  for (const c of CASES) {
    it(`${c.name}: the SDK and the worker connect and run commands`, async () => {
      const caseDir = await mkdtemp(join(dir, "case-"));
      const { config, auth } = await c.setup(c.name.startsWith("TLS") ? tlsDir : caseDir);
      const server = await NatsServer.start({ config });
      const prefix = testPrefix();
      let nc: NatsConnection | undefined;
      let worker: Worker | undefined;
      let proc: WorkerProcess | undefined;
      try {
        nc = await connectNats({ ...auth, nats: server.url }, "auth-test-scheduler");
        const client = new VmqClient(nc, { prefix, timeoutMs: 30_000 });
        worker = new Worker(
          {
            nats: server.url,
            prefix,
            host: "h1",
            dataDir: join(caseDir, "h1"),
            reconcileIntervalMs: 0,
            heartbeatMs: 500,
            ...auth,
          },
          { router: new HypervisorRouter([new NoopBackend()]), logger: silentLogger() },
        );
        await worker.start();
        const r1 = await client.send("h1", { type: "vm.prepare", vmId: "a1", spec: SPEC });
        assert.equal(r1.outcome.type, "vm.prepared");
        const r2 = await client.send("h1", { type: "vm.start", vmId: "a1" });
        assert.equal(r2.outcome.type, "vm.started");
        const q = await client.query("h1", "a1", "state");
        assert.ok(q.ok, "the worker answers queries over the authenticated connection");

        if (c.process) {
          proc = new WorkerProcess(
            [
              "--nats",
              server.url,
              "--host",
              "h2",
              "--prefix",
              prefix,
              "--data-dir",
              join(caseDir, "h2"),
              "--backend",
              "noop",
              "--reconcile-interval-ms",
              "0",
              "--heartbeat-ms",
              "500",
              ...flags(auth),
            ],
            { VMQ_LOG_LEVEL: "warn" },
          ).start();
          const p = proc;
          await eventually(
            async () => ((await client.hosts()).some((h) => h.host === "h2") ? true : undefined),
            30_000,
            `the vmq worker process on h2 (output: ${p.output.slice(-500)})`,
          );
          const r3 = await client.send("h2", { type: "vm.prepare", vmId: "b1", spec: SPEC });
          assert.equal(r3.outcome.type, "vm.prepared");
          const r4 = await client.send("h2", { type: "vm.start", vmId: "b1" });
          assert.equal(r4.outcome.type, "vm.started");
        }
      } finally {
        if (proc) await proc.kill("SIGTERM");
        await worker?.drain().catch(() => undefined);
        await nc?.close();
        await server.stop();
      }
    });
  }

  it("a wrong password fails fast with one clear error (SDK, operator CLI and worker)", async () => {
    const server = await NatsServer.start({
      config: usersConfig([{ user: "vmq", password: "right" }]),
    });
    try {
      const began = Date.now();
      await assert.rejects(
        connectNats({ nats: server.url, user: "vmq", password: "wrong" }, "t"),
        (e: Error & { code?: string }) => {
          assert.equal(e.code, "nats::auth-failed");
          assert.match(e.message, /authorization violation/i);
          return true;
        },
      );
      assert.ok(Date.now() - began < 5_000, "no hang");

      const cli = await cliHosts({
        VMQ_NATS_URL: server.url,
        VMQ_USER: "vmq",
        VMQ_PASSWORD: "wrong",
      });
      assert.equal(cli.exitCode, 1, cli.stderr);
      assert.match(cli.stderr, /authorization violation/i);
      assert.match(cli.stderr, /\[nats::auth-failed\]/);
      assert.doesNotMatch(cli.stderr + cli.stdout, /wrong/, "the password is not echoed");

      const w = new WorkerProcess(
        ["--nats", server.url, "--host", "h1", "--data-dir", join(dir, "wp"), "--backend", "noop"],
        { VMQ_USER: "vmq", VMQ_PASSWORD: "wrong" },
      ).start();
      const t0 = Date.now();
      const code = await w.exit();
      assert.equal(code, 1, w.output);
      assert.ok(Date.now() - t0 < 20_000, "the worker gives up at once instead of retrying");
      assert.match(w.output, /worker failed to start/);
      assert.match(w.output, /authorization violation/i);
      assert.match(w.output, /nats::auth-failed/);
      assert.doesNotMatch(w.output, /"wrong"|password":"wrong/, "the password is not logged");
    } finally {
      await server.stop();
    }
  });

  it("an untrusted CA fails fast with a certificate error", async () => {
    const t = await tlsFiles(tlsDir);
    const server = await NatsServer.start({ config: tlsConfig(t) });
    try {
      const began = Date.now();
      await assert.rejects(
        connectNats(
          { nats: server.url, tlsCa: t.otherCaCert, tlsCert: t.clientCert, tlsKey: t.clientKey },
          "t",
        ),
        (e: Error & { code?: string }) => {
          assert.equal(e.code, "nats::tls");
          assert.match(e.message, /certificate/i);
          return true;
        },
      );
      assert.ok(Date.now() - began < 5_000, "no hang");
      const cli = await cliHosts({ VMQ_NATS_URL: server.url, VMQ_TLS_CA: t.otherCaCert });
      assert.equal(cli.exitCode, 1, cli.stderr);
      assert.match(cli.stderr, /certificate/i);
      assert.match(cli.stderr, /\[nats::tls\]/);
    } finally {
      await server.stop();
    }
  });
});
