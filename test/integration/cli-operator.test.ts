import assert from "node:assert/strict";
import { mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { parse } from "yaml";
import type { VmView } from "../../src/contracts/index.js";
import { runVmq } from "../helpers/cli.js";
import { Harness, SPEC, eventually } from "../helpers/worker-harness.js";

/** The one stderr line of a failed vmq command. */
const errorLine = (stderr: string): string => {
  const all = stderr.split("\n").filter(Boolean);
  assert.equal(all.length, 1, `exactly one line on stderr:\n${stderr}`);
  return all[0] ?? "";
};

/**
 * The operator conventions of nats/kubectl, on the built CLI as a process against a real
 * nats-server and worker: contexts, -o, per-VM versions, --watch, vmq check, bad input.
 */
describe("vmq operator conventions (the built CLI, as a process)", { timeout: 240_000 }, () => {
  let h: Harness;
  let dir: string;
  /** No connection variables at all: only the config dir (so the user's own is never read). */
  const bare = () => ({ VMQ_CONFIG_DIR: join(dir, "cfg") });
  const env = () => ({ ...bare(), VMQ_NATS_URL: h.server.url, VMQ_PREFIX: h.prefix });
  const vmq = (args: string[], extra: Record<string, string> = {}) =>
    runVmq(args, { env: { ...env(), ...extra } });

  before(async () => {
    h = await Harness.start();
    dir = await mkdtemp(join(tmpdir(), "vmq-cli-op-"));
    await h.worker({ host: "h1" });
    // o2's events fall between o1's: o1's count and its stream sequence differ.
    await h.client.prepare("o1", SPEC, { host: "h1" });
    await h.client.prepare("o2", SPEC, { host: "h1" });
    await h.client.start("o1", { host: "h1" });
  });
  after(async () => {
    await h.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it("contexts: add, select, list; every command connects through the selected one", async () => {
    const add = await runVmq(
      ["context", "add", "here", "--nats", h.server.url, "--prefix", h.prefix, "--select"],
      { env: bare() },
    );
    assert.equal(add.exitCode, 0, add.stderr);
    const wrong = await runVmq(
      ["context", "add", "elsewhere", "--nats", "nats://127.0.0.1:1", "--prefix", "nothing"],
      { env: bare() },
    );
    assert.equal(wrong.exitCode, 0, wrong.stderr);
    assert.equal((await stat(join(dir, "cfg", "contexts", "here.json"))).mode & 0o777, 0o600);

    const ls = await runVmq(["context", "ls"], { env: bare() });
    assert.match(ls.stdout, /^\* +here +nats:\/\//m, "the selected context is marked");
    assert.match(ls.stdout, /^ +elsewhere +nats:\/\/127\.0\.0\.1:1 +nothing/m);

    // No --nats, no VMQ_NATS_URL: the context says where.
    const list = await runVmq(["list", "-o", "json"], { env: bare() });
    assert.equal(list.exitCode, 0, list.stderr);
    assert.deepEqual(
      (JSON.parse(list.stdout) as VmView[]).map((v) => v.vmId),
      ["o1", "o2"],
    );
    // --context for one command; a flag or variable still wins over the context.
    const other = await runVmq(["list", "--context", "elsewhere"], { env: bare() });
    assert.equal(other.exitCode, 1);
    assert.match(errorLine(other.stderr), /127\.0\.0\.1:1.*\[nats::unreachable\]/);
    const flagWins = await runVmq(
      ["list", "--context", "elsewhere", "--nats", h.server.url, "--prefix", h.prefix],
      { env: bare() },
    );
    assert.equal(flagWins.exitCode, 0, flagWins.stderr);
    const envWins = await runVmq(["list", "--context", "elsewhere"], { env: env() });
    assert.equal(envWins.exitCode, 0, envWins.stderr);

    const unknown = await runVmq(["list", "--context", "nope"], { env: bare() });
    assert.equal(unknown.exitCode, 2);
    assert.match(errorLine(unknown.stderr), /no context named "nope".*\[cli::unknown-context\]/);
    const creds = await runVmq(["context", "add", "x", "--creds", join(dir, "missing.creds")], {
      env: bare(),
    });
    assert.equal(creds.exitCode, 2);
    assert.match(errorLine(creds.stderr), /missing\.creds.*\[cli::unreadable-file\]/);
  });

  it("-o json|yaml|wide print the same records; VERSION counts the VM's own events", async () => {
    const o1 = await eventually(async () => {
      const v = await h.client.get("o1");
      return v?.state === "running" && v.pending === null ? v : undefined;
    });
    const history = await h.client.history("h1", "o1");
    assert.equal(o1.eventCount, history.length, "the view's count is the VM's event count");
    assert.ok(o1.lastEventSeq > history.length, "the global sequence is another number");

    const [json, yaml, table, wide, hosts, describe, events] = await Promise.all([
      vmq(["get", "o1", "-o", "json"]),
      vmq(["get", "o1", "-o", "yaml"]),
      vmq(["list"]),
      vmq(["list", "-o", "wide"]),
      vmq(["hosts", "-o", "yaml"]),
      vmq(["describe", "o1", "-o", "json"]),
      vmq(["events", "o1", "-o", "yaml", "--since", "1h"]),
    ]);
    for (const r of [json, yaml, table, wide, hosts, describe, events])
      assert.equal(r.exitCode, 0, r.stderr);
    assert.deepEqual(JSON.parse(json.stdout), o1);
    assert.deepEqual(parse(yaml.stdout), o1);
    assert.match(table.stdout, /^VMID +HOST +STATE +VERSION +PENDING +AGE$/m);
    assert.match(table.stdout, new RegExp(`^o1 +h1 +running +${history.length} +- +\\d+s$`, "m"));
    assert.match(
      wide.stdout,
      new RegExp(`^o1 +h1 +running +${history.length} +${o1.lastEventSeq} +noop`, "m"),
    );
    assert.equal((parse(hosts.stdout) as { host: string }[])[0]?.host, "h1");
    assert.equal((JSON.parse(describe.stdout) as { view: VmView }).view.vmId, "o1");
    const docs = events.stdout.split(/^---$/m).filter((d) => d.trim());
    assert.equal(docs.length, history.length, "one YAML document per event");
    assert.equal((parse(docs[0] ?? "") as { type: string }).type, "vm.command-accepted");

    const recent = await vmq(["list", "--since", "2026-01-01T00:00:00Z", "-o", "json"]);
    assert.equal((JSON.parse(recent.stdout) as unknown[]).length, 2);
    const future = new Date(Date.now() + 3_600_000).toISOString();
    const none = await vmq(["list", "--since", future, "-o", "json"]);
    assert.deepEqual(JSON.parse(none.stdout), []);
  });

  it("--watch prints the current state, then a line per change, and ends quietly on Ctrl-C", async () => {
    const p = runVmq(["list", "--watch", "-o", "json"], { env: env() });
    const seen: VmView[] = [];
    let buf = "";
    p.stdout?.on("data", (d: Buffer) => {
      buf += d.toString();
      const lines = buf.split("\n");
      buf = lines.pop() ?? "";
      for (const l of lines) {
        const doc = JSON.parse(l) as VmView | VmView[];
        seen.push(...(Array.isArray(doc) ? doc : [doc]));
      }
    });
    await eventually(() => (seen.some((v) => v.vmId === "o2") ? true : undefined), 30_000);
    const before = seen.length;
    await h.client.start("o2", { host: "h1" });
    await eventually(
      () =>
        seen.slice(before).some((v) => v.vmId === "o2" && v.state === "running") ? true : undefined,
      30_000,
    );
    p.kill("SIGINT");
    const r = await p;
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(r.stderr, "");
  });

  it("get --watch follows one VM in table form", async () => {
    const p = runVmq(["get", "o2", "--watch"], { env: env() });
    let out = "";
    p.stdout?.on("data", (d: Buffer) => (out += d.toString()));
    await eventually(() => (/^o2 +h1 +running/m.test(out) ? true : undefined), 30_000);
    await h.client.suspend("o2", { host: "h1" });
    await eventually(() => (/^o2 +h1 +suspended/m.test(out) ? true : undefined), 30_000);
    p.kill("SIGINT");
    const r = await p;
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(out.split("\n").filter((l) => l.startsWith("VMID")).length, 1, "one header");
  });

  it("vmq check: all good with a live host (exit 0); an unprovisioned prefix is a problem (exit 1)", async () => {
    const good = await vmq(["check"]);
    assert.equal(good.exitCode, 0, good.stdout + good.stderr);
    assert.match(good.stdout, /^ok +connection +.*nats-server \d+\.\d+\.\d+, rtt \d+ ms/m);
    assert.match(good.stdout, /^ok +provisioning /m);
    assert.match(
      good.stdout,
      /-leases, [^ ]*-cancels present/,
      "the lease and cancel buckets are checked too",
    );
    assert.match(good.stdout, /^ok +host h1 +running, last heartbeat [\d.]+ s ago/m);
    assert.match(good.stdout, /^ok +clock h1 +host clock [+-]\d+ ms/m);
    const json = await vmq(["check", "-o", "json"]);
    const doc = JSON.parse(json.stdout) as { ok: boolean; checks: { check: string }[] };
    assert.equal(doc.ok, true);
    assert.ok(doc.checks.some((c) => c.check === "clock local"));

    const bare = await vmq(["check", "--prefix", "neverprovisioned"]);
    assert.equal(bare.exitCode, 1);
    assert.match(
      bare.stdout,
      /^problem provisioning +prefix neverprovisioned: missing .* — fix: start a worker/m,
    );
    const down = await vmq(["check", "--nats", "nats://127.0.0.1:1"]);
    assert.equal(down.exitCode, 1);
    assert.match(down.stdout, /^problem connection .*\[nats::unreachable\]/m);
  });

  it("every bad input is one coded line and exit 2, before anything is published", async () => {
    await writeFile(join(dir, "spec.json"), "{not json");
    const cases: [string[], RegExp][] = [
      [["get", "bad.id"], /\[cli::invalid-vm-id\]/],
      [["describe", "x/y"], /\[cli::invalid-vm-id\]/],
      [["list", "-o", "xml"], /'xml' is invalid.*table, wide, json, yaml.*\[cli::usage\]/],
      [["get", "o1", "-o", "csv"], /\[cli::usage\]/],
      [["list", "--since", "yesterday"], /--since must be a duration.*\[cli::invalid-option\]/],
      [["events", "--since", "10y"], /\[cli::invalid-option\]/],
      [
        ["list", "--limit", "-1"],
        /--limit must be a non-negative integer.*\[cli::invalid-option\]/,
      ],
      [["list", "--state", "sleeping"], /'sleeping' is invalid.*\[cli::usage\]/],
      [["list", "--host", "h.1"], /\[cli::invalid-host\]/],
      [["list", "--context", "../etc"], /\[cli::invalid-context\]/],
      [["list", "--context", "nosuch"], /\[cli::unknown-context\]/],
      [["context", "use", "nosuch"], /\[cli::unknown-context\]/],
      [["context", "add", "a.b"], /\[cli::invalid-context\]/],
      [["stop", "o1", "--timeout-ms", "soon"], /\[cli::invalid-option\]/],
      [["stop", "o1", "--force", "sometimes"], /\[cli::usage\]/],
      [
        ["prepare", "p1", "--spec", join(dir, "spec.json"), "--host", "h1"],
        /\[cli::invalid-spec\]/,
      ],
      [
        ["prepare", "p1", "--spec", join(dir, "none.json"), "--host", "h1"],
        /\[cli::unreadable-file\]/,
      ],
      [["check", "--max-skew-ms", "lots"], /\[cli::invalid-option\]/],
      [["dlq", "show", "x"], /\[cli::invalid-option\]/],
      [["completion", "tcsh"], /unknown shell.*\[cli::usage\]/],
      [["frobnicate"], /unknown command 'frobnicate'.*\[cli::usage\]/],
      [["start"], /missing required argument 'vmId'.*\[cli::usage\]/],
      [["list", "--prefix", "Bad.Prefix"], /\[config::invalid\]/],
      [["list", "--tls-ca", join(dir, "nope.pem")], /nope\.pem/],
    ];
    const results = await Promise.all(cases.map(([args]) => vmq(args)));
    cases.forEach(([args, want], i) => {
      const r = results[i];
      assert.ok(r);
      assert.equal(r.exitCode, 2, `vmq ${args.join(" ")}: exit 2, got ${r.exitCode}\n${r.stderr}`);
      const line = errorLine(r.stderr);
      assert.match(line, /^vmq: /, args.join(" "));
      assert.match(line, /\[[a-z-]+::[a-z-]+\]/, `vmq ${args.join(" ")}: a code in ${line}`);
      assert.match(line, want, `vmq ${args.join(" ")}`);
      assert.doesNotMatch(line, /at .*\(node:|\[\s*\{/, "no stack, no raw issue array");
    });
    assert.equal(await h.client.get("p1"), undefined, "nothing was prepared");
  });
});
