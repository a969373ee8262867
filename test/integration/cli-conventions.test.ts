import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { jetstreamManager } from "@nats-io/jetstream";
import { execa } from "execa";
import { names as namesFor } from "../../src/contracts/index.js";
import { builtCliPath, ROOT, runVmq } from "../helpers/cli.js";
import { findNatsServer } from "../helpers/nats-server.js";
import { Harness, SPEC, eventually } from "../helpers/worker-harness.js";

/** The one stderr line of a failed vmq command. */
const errorLine = (stderr: string): string => {
  const all = stderr.split("\n").filter(Boolean);
  assert.equal(all.length, 1, `exactly one line on stderr:\n${stderr}`);
  return all[0] ?? "";
};

/** Rough edges a newcomer hits first: each ends in one readable line and the right exit code. */
describe("vmq CLI conventions (the built CLI, as a process)", { timeout: 180_000 }, () => {
  let h: Harness;
  let dir: string;
  const env = () => ({ VMQ_NATS_URL: h.server.url, VMQ_PREFIX: h.prefix });
  const vmq = (args: string[]) => runVmq(args, { env: env() });

  before(async () => {
    h = await Harness.start();
    dir = await mkdtemp(join(tmpdir(), "vmq-cli-conv-"));
    await h.worker({ host: "h1" });
    for (const id of ["c1", "c2", "c3"]) await h.client.prepare(id, SPEC, { host: "h1" });
    await h.client.destroy("c3", { host: "h1" });
  });
  after(async () => {
    await h.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it("ends quietly with exit 0 when the reader of its output goes away (EPIPE)", async () => {
    // `vmq events | head -1`: an argument-array pipe between two processes, no shell.
    const events = execa(process.execPath, [builtCliPath, "events"], {
      cwd: ROOT,
      env: env(),
      reject: false,
      stdout: "pipe",
    });
    const head = execa("head", ["-n", "1"], { reject: false });
    events.stdout?.pipe(head.stdin);
    const [e, hd] = await Promise.all([events, head]);
    assert.equal(hd.stdout.split("\n").length, 1, hd.stdout);
    assert.match(hd.stdout, /vm\.command-accepted/);
    assert.equal(e.exitCode, 0, e.stderr);
    assert.doesNotMatch(e.stderr, /EPIPE|at .*\(node:/);
  });

  it("refuses an out-of-range option with one coded line and exit 2, publishing nothing", async () => {
    const r = await vmq(["stop", "c1", "--timeout-ms", "99999999999"]);
    assert.equal(r.exitCode, 2);
    const line = errorLine(r.stderr);
    assert.match(line, /timeoutMs: Too big.*\[command::invalid\] — hint: .*vm\.stop\.v1\.json/);
    assert.doesNotMatch(line, /"origin"|\[\s*\{/); // not a raw zod issue array
    assert.equal((await h.client.get("c1"))?.state, "prepared");
  });

  it("refuses a --host that is not a live host unless --queue-for-unknown-host", async () => {
    const r = await vmq(["start", "c1", "--host", "nohost"]);
    assert.equal(r.exitCode, 2);
    assert.match(
      errorLine(r.stderr),
      /host nohost is not a live host.*live: h1.*\[client::host-unknown\]/,
    );
    const queued = await vmq([
      "start",
      "c1",
      "--host",
      "nohost",
      "--queue-for-unknown-host",
      "--no-wait",
    ]);
    assert.equal(queued.exitCode, 0, queued.stderr);
    assert.match(queued.stdout, /^[0-9a-f-]{36}$/);
  });

  it("prints the commandId and how to follow it when interrupted while waiting", async () => {
    const p = runVmq(["start", "c2", "--host", "later", "--queue-for-unknown-host"], {
      env: env(),
    });
    // Ctrl-C once the command is on the stream, i.e. while the CLI waits for its outcome.
    const jsm = await jetstreamManager(h.nc);
    const n = namesFor(h.prefix);
    await eventually(async () => {
      const info = await jsm.streams.info(n.commandsStream, {
        subjects_filter: n.cmd("later", "c2"),
      });
      return (info.state.subjects?.[n.cmd("later", "c2")] ?? 0) > 0 ? true : undefined;
    }, 30_000);
    await new Promise((r) => setTimeout(r, 500)); // its PubAck is back: it waits for the outcome
    p.kill("SIGINT");
    const r = await p;
    assert.equal(r.exitCode, 130);
    assert.match(
      errorLine(r.stderr),
      /interrupted; vm\.start c2 \(command [0-9a-f-]{36}\) was published to later .*vmq events c2 --follow/,
    );
  });

  it("says a destroyed VM is destroyed instead of telling the user to wait", async () => {
    const r = await vmq(["start", "c3"]);
    assert.equal(r.exitCode, 3);
    const line = errorLine(r.stderr);
    assert.match(line, /\[command::illegal-transition\] — hint: VM c3 is destroyed/);
    assert.doesNotMatch(line, /Wait for/);
  });

  it("lists live VMs by default, destroyed ones with --all, and honours --limit", async () => {
    const ids = (out: string) =>
      out
        .split("\n")
        .slice(1)
        .filter(Boolean)
        .map((l) => l.split(/\s+/)[0]);
    assert.deepEqual(ids((await vmq(["list"])).stdout), ["c1", "c2"]);
    assert.deepEqual(ids((await vmq(["list", "--all"])).stdout), ["c1", "c2", "c3"]);
    assert.deepEqual(ids((await vmq(["list", "--all", "--limit", "2"])).stdout), ["c1", "c2"]);
    assert.deepEqual(ids((await vmq(["list", "--state", "destroyed"])).stdout), ["c3"]);
  });

  it("describes prepare's host selection as placement", async () => {
    const r = await vmq(["prepare", "--help"]);
    assert.match(r.stdout, /--host <host>\s+the VM's host \(default: one chosen by\s+placement/);
  });

  it("names a garbage creds file and a missing TLS CA as config errors (exit 2)", async () => {
    const creds = join(dir, "garbage.creds");
    await writeFile(creds, "not a creds file\n");
    const c = await vmq(["list", "--creds", creds]);
    assert.equal(c.exitCode, 2);
    assert.match(errorLine(c.stderr), /is not a NATS credentials file.*\[config::invalid-creds\]/);
    const t = await vmq(["list", "--tls-ca", join(dir, "missing-ca.pem")]);
    assert.equal(t.exitCode, 2);
    assert.match(
      errorLine(t.stderr),
      /--tls-ca file .*missing-ca\.pem.*\[config::unreadable-file\]/,
    );
  });

  it("says vmq is not provisioned on a server without JetStream or without its streams", async () => {
    const bin = await findNatsServer();
    const plain = execa(bin, ["-a", "127.0.0.1", "-p", "-1", "-l", join(dir, "plain.log")], {
      reject: false,
    });
    try {
      let url = "";
      for (let i = 0; i < 100 && !url; i++) {
        await new Promise((r) => setTimeout(r, 50));
        const log = await readFile(join(dir, "plain.log"), "utf8").catch(() => "");
        url = /Listening for client connections on (\S+)/.exec(log)?.[1] ?? "";
      }
      assert.ok(url, "the plain nats-server started");
      const r = await runVmq(["list"], { env: { VMQ_NATS_URL: `nats://${url}` } });
      assert.equal(r.exitCode, 1);
      assert.match(
        errorLine(r.stderr),
        /vmq is not provisioned on this server \(jetstream is not enabled\) \[nats::not-provisioned\]/,
      );
    } finally {
      plain.kill("SIGTERM");
      await plain;
    }
    const other = await runVmq(["list"], { env: { ...env(), VMQ_PREFIX: "neverused" } });
    assert.equal(other.exitCode, 1);
    assert.match(errorLine(other.stderr), /not provisioned.*\[nats::not-provisioned\]/);
  });
});
