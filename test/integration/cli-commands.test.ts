import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Kvm } from "@nats-io/kv";
import { names as namesFor, type VmEvent, type VmView } from "../../src/contracts/index.js";
import { assertOneLineError, runVmq } from "../helpers/cli.js";
import {
  makePropolisFixture,
  type PropolisFixture,
} from "../helpers/fake-propolis/propolis-fixture.js";
import { Harness, SPEC, eventually } from "../helpers/worker-harness.js";

describe("vmq operator commands (the CLI, as a process)", { timeout: 240_000 }, () => {
  let h: Harness;
  let fx: PropolisFixture;
  let dir: string;

  const spawnVmq = (args: string[]) =>
    runVmq(args, { env: { VMQ_NATS_URL: h.server.url, VMQ_PREFIX: h.prefix }, stdin: "pipe" });
  /** Runs the built `vmq ...` with the test's NATS URL and prefix in its environment. */
  const vmq = async (
    args: string[],
    input = "",
  ): Promise<{ exitCode: number | undefined; stdout: string; stderr: string }> => {
    const r = await runVmq(args, {
      env: { VMQ_NATS_URL: h.server.url, VMQ_PREFIX: h.prefix },
      input,
    });
    return { exitCode: r.exitCode, stdout: r.stdout, stderr: r.stderr };
  };
  const json = <T>(stdout: unknown): T => JSON.parse(String(stdout)) as T;
  const lines = (stdout: unknown): string[] => String(stdout).split("\n").filter(Boolean);

  before(async () => {
    h = await Harness.start();
    fx = await makePropolisFixture();
    dir = await mkdtemp(join(tmpdir(), "vmq-cli-"));
    await h.worker({ host: "h1" });
    await h.worker({ host: "ill", extra: [fx.backend] });
  });
  after(async () => {
    await h.stop();
    await fx.cleanup();
    await rm(dir, { recursive: true, force: true });
  });

  interface Result {
    ok: boolean;
    commandId: string;
    host: string;
    vmId: string;
    type: string;
    accepted: boolean;
    outcomeSeq: number;
    outcomeType: string;
    state: string;
    outcome: VmEvent;
  }

  it("prepares, starts, stops and destroys a VM, and its --json output matches the events", async () => {
    const prep = await vmq([
      "prepare",
      "c-1",
      "--backend",
      "noop",
      "--image",
      "/images/base.qcow2",
      "--memory-mb",
      "256",
      "--json",
    ]);
    assert.equal(prep.exitCode, 0, prep.stderr);
    const p = json<Result>(prep.stdout);
    assert.equal(p.outcomeType, "vm.prepared");
    assert.equal(p.state, "prepared");
    const host = p.host; // chosen by placement: either worker offers noop
    assert.ok(["h1", "ill"].includes(host));

    const start = await vmq(["start", "c-1", "--json"]); // host from the view
    assert.equal(start.exitCode, 0, start.stderr);
    const stop = await vmq(["stop", "c-1", "--timeout-ms", "5000", "--force", "now", "--json"]);
    assert.equal(stop.exitCode, 0, stop.stderr);
    const destroy = await vmq(["destroy", "c-1", "--host", host, "--json"]);
    assert.equal(destroy.exitCode, 0, destroy.stderr);
    const results = [
      p,
      json<Result>(start.stdout),
      json<Result>(stop.stdout),
      json<Result>(destroy.stdout),
    ];
    assert.deepEqual(
      results.map((r) => [r.type, r.outcomeType, r.state, r.ok, r.accepted]),
      [
        ["vm.prepare", "vm.prepared", "prepared", true, true],
        ["vm.start", "vm.started", "running", true, true],
        ["vm.stop", "vm.stopped", "stopped", true, true],
        ["vm.destroy", "vm.destroyed", "destroyed", true, true],
      ],
    );

    const history = await h.client.history(host, "c-1");
    for (const r of results) {
      const stored = history.find((e) => e.seq === r.outcomeSeq);
      assert.ok(stored, `outcome ${r.outcomeSeq} is in the stream`);
      assert.deepEqual(stored.event, r.outcome);
      assert.equal(stored.event.causationId, r.commandId);
    }
    const accepted = history.find(
      (e) =>
        e.event.type === "vm.command-accepted" && e.event.causationId === results[2]?.commandId,
    );
    assert.ok(accepted?.event.type === "vm.command-accepted");
    assert.deepEqual(
      accepted.event.command.type === "vm.stop" && [
        accepted.event.command.timeoutMs,
        accepted.event.command.force,
      ],
      [5000, "now"],
      "--timeout-ms and --force reach the command",
    );
  });

  it("prints a one-line summary without --json", async () => {
    const prep = await vmq(["prepare", "c-2", "--host", "h1", "--image", "/images/base.qcow2"]);
    assert.equal(prep.exitCode, 0, prep.stderr);
    assert.match(prep.stdout, /^c-2: vm\.prepared, now prepared \(host h1, version \d+\)$/);
    const start = await vmq(["start", "c-2"]);
    assert.equal(start.exitCode, 0, start.stderr);
    assert.match(start.stdout, /^c-2: vm\.started, now running \(host h1, version \d+\)$/);
  });

  it("--no-wait publishes and prints only the commandId", async () => {
    await h.client.send("h1", { type: "vm.prepare", vmId: "c-3", spec: SPEC });
    const r = await vmq(["start", "c-3", "--no-wait"]);
    assert.equal(r.exitCode, 0, r.stderr);
    const commandId = r.stdout.trim();
    assert.match(commandId, /^[0-9a-f-]{36}$/);
    const { outcome } = await h.client.waitForOutcome("h1", "c-3", commandId, {
      timeoutMs: 15_000,
    });
    assert.equal(outcome.type, "vm.started");

    const j = await vmq(["suspend", "c-3", "--no-wait", "--json"]);
    assert.equal(j.exitCode, 0, j.stderr);
    const body = json<{ commandId: string; seq: number; waited: boolean }>(j.stdout);
    assert.equal(body.waited, false);
    assert.ok(body.seq > 0);
    const s = await h.client.waitForOutcome("h1", "c-3", body.commandId, { timeoutMs: 15_000 });
    assert.equal(s.outcome.type, "vm.suspended");
  });

  it("exits 3 with the code of a rejected command, and 4 when nobody answers", async () => {
    await h.client.send("h1", { type: "vm.prepare", vmId: "c-4", spec: SPEC });
    const [r, j, t] = await Promise.all([
      vmq(["resume", "c-4"]),
      vmq(["resume", "c-4", "--json"]),
      vmq([
        "start",
        "c-4",
        "--host",
        "ghost",
        "--queue-for-unknown-host",
        "--wait-timeout-ms",
        "1500",
      ]),
    ]);
    assert.equal(r.exitCode, 3);
    assertOneLineError(
      r.stderr,
      /^vmq: vm\.resume of c-4 was rejected: .*\[command::illegal-transition\]( — hint: .+)?$/,
    );
    assert.equal(r.stdout, "");
    assert.equal(j.exitCode, 3);
    const body = json<Result>(j.stdout);
    assert.equal(body.ok, false);
    assert.equal(body.outcome.type, "vm.command-rejected");
    assert.equal(
      body.outcome.type === "vm.command-rejected" && body.outcome.code,
      "command::illegal-transition",
    );

    assert.equal(t.exitCode, 4, t.stderr);
    assertOneLineError(t.stderr, /was not even accepted by ghost.*\[client::not-accepted\]/);
  });

  it("get, list and hosts show the view and the registry", async () => {
    const view = await eventually(async () => {
      const v = await h.client.get("c-2");
      return v?.state === "running" ? v : undefined;
    });
    const [g, gh, missing] = await Promise.all([
      vmq(["get", "c-2", "--json"]),
      vmq(["get", "c-2"]),
      vmq(["get", "nope-1"]),
    ]);
    assert.equal(g.exitCode, 0, g.stderr);
    assert.deepEqual(json<VmView>(g.stdout), view);
    assert.match(gh.stdout, /^state: +running$/m);
    assert.match(gh.stdout, /^host: +h1$/m);
    assert.equal(missing.exitCode, 1);
    assertOneLineError(missing.stderr, /^vmq: VM nope-1 .*\[vm::not-found\] — hint: \S/);

    const [l, lh, running, hosts] = await Promise.all([
      vmq(["list", "--json"]),
      vmq(["list", "--host", "h1"]),
      vmq(["list", "--state", "running", "--json"]),
      vmq(["hosts"]),
    ]);
    // `vmq list` leaves destroyed VMs out unless --all (c-1 is destroyed by now).
    const all = (await h.client.list()).filter((v) => v.state !== "destroyed");
    assert.ok(all.length > 0);
    assert.deepEqual(json<VmView[]>(l.stdout), all);
    const h1 = all.filter((v) => v.host === "h1");
    const rows = lines(lh.stdout);
    assert.match(rows[0] ?? "", /^VMID +HOST +STATE +VERSION/);
    assert.deepEqual(
      rows.slice(1).map((r) => r.split(/\s+/).slice(0, 3)),
      h1.map((v) => [v.vmId, "h1", v.state]),
    );
    assert.deepEqual(
      json<VmView[]>(running.stdout).map((v) => v.vmId),
      all.filter((v) => v.state === "running").map((v) => v.vmId),
    );
    assert.ok(json<VmView[]>(running.stdout).some((v) => v.vmId === "c-2"));
    assert.match(hosts.stdout, /^HOST +ROLE +STATE/);
    assert.match(hosts.stdout, /^h1 +active +running +\S+ +noop +\d+/m);
    assert.match(hosts.stdout, /^ill +active +running +\S+ +noop,propolis/m);
  });

  it("events prints the history and stops at its end; --since starts later", async () => {
    const history = await h.client.history("h1", "c-2");
    const third = history[2]?.seq ?? 0;
    const [r, human, since, none] = await Promise.all([
      vmq(["events", "c-2", "--json"]),
      vmq(["events", "c-2", "--host", "h1"]),
      vmq(["events", "c-2", "--since", String(third), "--json"]),
      vmq(["events", "never-1"]),
    ]);
    assert.equal(r.exitCode, 0, r.stderr);
    const got = lines(r.stdout).map((x) => json<VmEvent & { seq: number }>(x));
    assert.deepEqual(
      got.map((e) => [e.seq, e.type, e.eventId]),
      history.map((e) => [e.seq, e.event.type, e.event.eventId]),
    );
    assert.equal(lines(human.stdout).length, history.length);
    assert.match(
      lines(human.stdout)[0] ?? "",
      /^\d+ \S+ h1\/c-2 vm\.command-accepted preparing cmd=/,
    );
    assert.deepEqual(
      lines(since.stdout).map((x) => json<{ seq: number }>(x).seq),
      history.slice(2).map((e) => e.seq),
    );
    assert.equal(none.exitCode, 0);
    assert.equal(none.stdout, "");
  });

  it("events --follow prints a new event as it comes, until it is stopped", async () => {
    const before = (await h.client.history("h1", "c-2")).length;
    const f = spawnVmq(["events", "c-2", "--follow", "--json"]);
    let out = "";
    f.stdout?.on("data", (d: Buffer) => (out += d.toString()));
    await eventually(() => (lines(out).length >= before ? true : undefined), 20_000, "history");
    const sent = await h.client.send("h1", { type: "vm.stop", vmId: "c-2", timeoutMs: 1000 });
    const followed = await eventually(
      () =>
        lines(out)
          .map((x) => json<VmEvent>(x))
          .find((e) => e.causationId === sent.commandId && e.type === "vm.stopped"),
      20_000,
      "the new vm.stopped event",
    );
    assert.equal(followed.eventId, sent.outcome.eventId);
    f.kill("SIGTERM");
    const done = await f;
    assert.equal(done.exitCode, 0, `exits cleanly on SIGTERM: ${done.stderr}`);
  });

  it("replay rebuilds the view from the events, and --rewrite-view repairs it", async () => {
    const want = await eventually(
      async () => {
        const r = await vmq(["replay", "--json"]);
        assert.equal(r.exitCode, 0, r.stderr);
        const replayed = json<VmView[]>(r.stdout);
        const view = await h.client.list();
        // The worker's view write is coalesced: a mismatch is tried again, and the last one's
        // diff is what `eventually` reports when it gives up.
        assert.deepEqual(replayed, view);
        return view;
      },
      20_000,
      "replay equal to the view",
    );
    assert.ok(want.length >= 4);
    const hostOnly = await vmq(["replay", "--host", "h1", "--json"]);
    assert.deepEqual(
      json<VmView[]>(hostOnly.stdout),
      want.filter((v) => v.host === "h1"),
    );

    const n = namesFor(h.prefix);
    const kv = await new Kvm(h.nc).open(n.vmsBucket);
    const c2 = want.find((v) => v.vmId === "c-2")!;
    const c3 = want.find((v) => v.vmId === "c-3")!;
    await kv.put(
      n.viewKey(c2.host, "c-2"),
      JSON.stringify({ ...c2, state: "failed", lastEventSeq: 1 }),
    );
    await kv.delete(n.viewKey(c3.host, "c-3"));
    await kv.put(
      n.viewKey(c2.host, "ghost-1"),
      JSON.stringify({ ...c2, vmId: "ghost-1", lastEventSeq: 0 }),
    );
    // A v1 record (keyed by vmId alone) left from before view key version 2: migrated away.
    await kv.put("c-2", JSON.stringify({ ...c2, state: "stopped" }));
    assert.notDeepEqual(await h.client.list(), want);

    const r = await vmq(["replay", "--rewrite-view"]);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.match(
      r.stderr,
      /2 rewritten, \d+ unchanged, 0 newer than the replay \(left\), 1 without events \(removed\), 1 v1 records \(keyed by vmId alone\) removed/,
    );
    assert.match(r.stdout, /^VMID +HOST +STATE/);
    assert.deepEqual(await h.client.list(), want, "the view is repaired");
    assert.equal(await kv.get("c-2").then((e) => e?.operation), "DEL", "the v1 key is gone");
  });

  it("console relays stdin to the VM and the VM's output to stdout; Ctrl-] detaches", async () => {
    const spec = {
      ...SPEC,
      backend: "propolis" as const,
      imagePath: "base",
      network: { type: "none" as const },
    };
    assert.equal(
      (await h.client.send("ill", { type: "vm.prepare", vmId: "pv-1", spec })).outcome.type,
      "vm.prepared",
    );
    assert.equal(
      (await h.client.send("ill", { type: "vm.start", vmId: "pv-1" })).outcome.type,
      "vm.started",
    );
    const fake = fx.fakes.get("pv-1");
    assert.ok(fake);
    const c = spawnVmq(["console", "pv-1"]);
    let out = "";
    c.stdout?.on("data", (d: Buffer) => (out += d.toString()));
    // Typed input reaches the VM's serial port (retyped until the session is up).
    await eventually(
      () => {
        c.stdin?.write("root\r");
        return Buffer.concat(fake.serialInput).toString().includes("root\r") ? true : undefined;
      },
      30_000,
      "input at the VM",
    );
    await eventually(
      () => {
        fake.writeSerial("\r\nlogin ok\r\n");
        return out.includes("login ok") ? true : undefined;
      },
      15_000,
      "VM output on stdout",
    );
    c.stdin?.write(Buffer.from([0x1d]));
    const done = await c;
    assert.equal(done.exitCode, 0, done.stderr);

    const noConsole = await vmq(["console", "c-2"]);
    assert.equal(noConsole.exitCode, 1);
    // c-2 was stopped above: it has no console to open, and the error says so (not ENOENT).
    assertOneLineError(
      noConsole.stderr,
      /VM c-2 is not running \(it is stopped\) \[console::not-running\]/,
    );
  });

  it("usage errors exit 2 with one readable line", async () => {
    const [bad, badId, badSpec, badForce, badPrefix, help, twoImages] = await Promise.all([
      vmq(["list", "--bogus"]),
      vmq(["start", "bad.id"]),
      vmq(["prepare", "x-1", "--host", "h1"]),
      vmq(["stop", "x-1", "--force", "sometimes"]),
      vmq(["list", "--prefix", "Bad.Prefix"]),
      vmq(["start", "--help"]),
      vmq(["prepare", "x-1", "--host", "h1", "--image", "/i/b.qcow2", "--image-ref", "base:v1"]),
    ]);
    assert.equal(bad.exitCode, 2);
    // Two base images is a mistake to say, not one to pick silently.
    assert.equal(twoImages.exitCode, 2);
    assertOneLineError(
      twoImages.stderr,
      /'--image <path>' cannot be used with.*--image-ref.*\[cli::usage\]/,
    );
    assertOneLineError(
      bad.stderr,
      /^vmq: unknown option '--bogus' \[cli::usage\] — hint: see vmq list --help for the usage$/,
    );
    assert.equal(badId.exitCode, 2);
    assertOneLineError(
      badId.stderr,
      /^vmq: invalid vmId "bad\.id": .*\[cli::invalid-vm-id\]( — hint: .+)?$/,
    );
    assert.equal(badSpec.exitCode, 2);
    assertOneLineError(badSpec.stderr, /invalid VM spec: imagePath.*\[cli::invalid-spec\]/);
    assert.equal(badForce.exitCode, 2);
    assertOneLineError(badForce.stderr, /sometimes.* — hint: see vmq stop --help for the usage$/);
    assert.equal(badPrefix.exitCode, 2);
    assertOneLineError(
      badPrefix.stderr,
      /^vmq: .*prefix.*\[config::invalid\] — hint: See --help for the connection flags/,
    );
    assert.equal(help.exitCode, 0);
    // A credentials file that cannot be read is a configuration error naming the flag, not
    // "NATS is unreachable"; a prefix no worker has provisioned says so.
    const [noCreds, fresh] = await Promise.all([
      vmq(["hosts", "--creds", join(dir, "missing.creds")]),
      vmq(["hosts", "--prefix", "nobodyhere"]),
    ]);
    assert.equal(noCreds.exitCode, 2);
    assertOneLineError(
      noCreds.stderr,
      /^vmq: cannot read the --creds file .*missing\.creds: ENOENT \[config::unreadable-file\] — hint: /,
    );
    assert.equal(fresh.exitCode, 1);
    assertOneLineError(
      fresh.stderr,
      /vmq is not provisioned on this server.*\[nats::not-provisioned\] — hint: start a vmq worker with this prefix/,
    );
    for (const s of [
      "--nats",
      "VMQ_NATS_URL",
      "--prefix",
      "--creds",
      "--tls-ca",
      "--no-wait",
      "Exit codes:",
      "3  the command was rejected",
    ])
      assert.ok(help.stdout.includes(s), `start --help mentions ${s}`);
  });
});
