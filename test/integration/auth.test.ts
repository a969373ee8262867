/**
 * Authentication against real nats-server processes: user/password, token, nkey seed,
 * credentials file (operator/account/user JWTs on a memory resolver) and TLS with a private CA
 * and client certificates; the SDK, the worker (in-process and as a real `vmq worker`
 * process) and the built `vmq` operator CLI work over each. Refused credentials (one per method)
 * and an untrusted CA fail fast with one readable line.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { createUser } from "@nats-io/nkeys";
import type { NatsConnection } from "@nats-io/transport-node";
import { VmqClient } from "../../src/client/index.js";
import type { HostRecord, VmView } from "../../src/contracts/index.js";
import { HypervisorRouter, NoopBackend } from "../../src/hypervisor/index.js";
import { silentLogger } from "../../src/observability/logger.js";
import { connectNats, type ConnectionConfig } from "../../src/worker/nats/connect.js";
import { Worker } from "../../src/worker/worker.js";
import { runVmq } from "../helpers/cli.js";
import { makeJwt, makeTls, tlsConfig, usersConfig, type TlsFiles } from "../helpers/nats-auth.js";
import { NatsServer, testPrefix } from "../helpers/nats-server.js";
import { SPEC, eventually } from "../helpers/worker-harness.js";
import { WorkerProcess } from "../helpers/worker-process.js";

type Auth = Omit<ConnectionConfig, "nats">;

/** Connection settings as flags of `vmq worker` (the same names as the config fields). */
function flags(c: Auth): string[] {
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
  setup(dir: string): Promise<{ config: string; auth: Auth }>;
  /** Settings of the same method that this server refuses, and the error code they give. */
  refused(dir: string, ok: Auth): Promise<{ auth: Auth; code: string; message: RegExp }>;
  /** Also run the worker as a real `vmq worker` process with these settings as flags. */
  process?: boolean;
}

/** The built `vmq` as an operator runs it (connection settings as flags and/or environment). */
const cli = (args: string[], env: Record<string, string> = {}) =>
  runVmq(args, { timeout: 30_000, env });

/** A connection failure: exit 1 (EXIT_CODES_HELP) and one `vmq: ... [code] — hint: ...` line. */
function assertCliConnectError(
  r: { exitCode?: number | undefined; stdout: string; stderr: string },
  code: string,
  message: RegExp,
): void {
  assert.equal(r.exitCode, 1, r.stderr);
  assert.equal(r.stdout, "");
  const lines = r.stderr.split("\n").filter(Boolean);
  assert.equal(lines.length, 1, `exactly one line on stderr:\n${r.stderr}`);
  const line = lines[0] ?? "";
  assert.match(line, /^vmq: cannot connect to NATS at nats:\/\/127\.0\.0\.1:\d+: /);
  assert.match(line, message);
  assert.ok(line.includes(` [${code}] — hint: `), line);
}

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
    refused: () =>
      Promise.resolve({
        auth: { user: "vmq", password: "not-the-pass" },
        code: "nats::auth-failed",
        message: /authorization violation/i,
      }),
  },
  {
    name: "token",
    setup: () =>
      Promise.resolve({
        config: `authorization { token: "t0ken-value" }`,
        auth: { token: "t0ken-value" },
      }),
    refused: () =>
      Promise.resolve({
        auth: { token: "not-the-t0ken" },
        code: "nats::auth-failed",
        message: /authorization violation/i,
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
    refused: async (dir) => {
      // a well-formed seed of a user the server does not know
      const seedFile = join(dir, "stranger.nk");
      await writeFile(seedFile, new TextDecoder().decode(createUser().getSeed()), { mode: 0o600 });
      return {
        auth: { nkeySeed: seedFile },
        code: "nats::auth-failed",
        message: /authorization violation/i,
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
    refused: async (dir) => {
      // a valid creds file, signed by an operator and account this server does not trust
      const foreign = await makeJwt();
      return {
        auth: { creds: await foreign.creds(join(dir, "foreign.creds"), "f") },
        code: "nats::auth-failed",
        message: /authorization violation/i,
      };
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
    refused: (_dir, ok) =>
      // the client certificate, but no --tls-ca: the system CAs do not know the private CA
      Promise.resolve({
        auth: { tlsCert: ok.tlsCert, tlsKey: ok.tlsKey },
        code: "nats::tls",
        message: /certificate/i,
      }),
  },
];

describe(
  "authentication: every supported method, SDK, worker and CLI",
  { timeout: 240_000 },
  () => {
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
      it(`${c.name}: the SDK, the worker and the vmq CLI connect; refused settings fail`, async () => {
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

          // The operator CLI (the built binary) with the same settings as flags, and refused ones.
          await eventually(
            async () => ((await client.get("a1"))?.state === "running" ? true : undefined),
            10_000,
            "a1 running in the view",
          );
          const bad = await c.refused(caseDir, auth);
          const conn = ["--nats", server.url, "--prefix", prefix];
          const [hosts, list, refused] = await Promise.all([
            cli(["hosts", "--json", ...conn, ...flags(auth)]),
            cli(["list", "--json", ...conn, ...flags(auth)]),
            cli(["hosts", "--json", ...conn, ...flags(bad.auth)]),
          ]);
          assert.equal(hosts.exitCode, 0, hosts.stderr);
          assert.ok(
            (JSON.parse(hosts.stdout) as HostRecord[]).some((x) => x.host === "h1"),
            hosts.stdout,
          );
          assert.equal(list.exitCode, 0, list.stderr);
          assert.deepEqual(
            (JSON.parse(list.stdout) as VmView[]).map((v) => [v.vmId, v.host, v.state]),
            [["a1", "h1", "running"]],
          );
          assertCliConnectError(refused, bad.code, bad.message);
          for (const secret of [bad.auth.password, bad.auth.token].filter(Boolean) as string[])
            assert.ok(!refused.stderr.includes(secret), "the refused secret is not echoed");

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

        const r = await cli(["hosts"], {
          VMQ_NATS_URL: server.url,
          VMQ_USER: "vmq",
          VMQ_PASSWORD: "wrong",
        });
        assertCliConnectError(r, "nats::auth-failed", /authorization violation/i);
        assert.doesNotMatch(r.stderr + r.stdout, /wrong/, "the password is not echoed");

        const w = new WorkerProcess(
          [
            "--nats",
            server.url,
            "--host",
            "h1",
            "--data-dir",
            join(dir, "wp"),
            "--backend",
            "noop",
          ],
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
        const r = await cli(["hosts"], { VMQ_NATS_URL: server.url, VMQ_TLS_CA: t.otherCaCert });
        assertCliConnectError(r, "nats::tls", /certificate/i);
      } finally {
        await server.stop();
      }
    });
  },
);
