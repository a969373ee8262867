import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { runVmq } from "../helpers/cli.js";
import { Harness, SPEC } from "../helpers/worker-harness.js";

describe("vmq describe (the built CLI, as a process)", { timeout: 120_000 }, () => {
  let h: Harness;
  const vmq = (args: string[]) =>
    runVmq(args, { env: { VMQ_NATS_URL: h.server.url, VMQ_PREFIX: h.prefix } });

  before(async () => {
    h = await Harness.start();
    await h.worker({ host: "h1" });
    await h.client.prepare("d1", SPEC, { host: "h1" });
    await h.client.start("d1", { host: "h1" });
  });
  after(() => h.stop());

  it("shows the view, the host's liveness, what it is busy with and its latest events", async () => {
    const r = await vmq(["describe", "d1", "--events", "2"]);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.match(r.stdout, /^state: +running$/m);
    assert.match(r.stdout, /^Host: +h1: running, heartbeat \d+s ago \(\S+\), vmq \S+$/m);
    assert.match(r.stdout, /^Busy: +nothing$/m);
    assert.match(r.stdout, /^Events \(last 2 of 4\):$/m);
    const events = r.stdout.split("\n").filter((l) => /^ {2}\d+ /.test(l));
    assert.equal(events.length, 2);
    assert.match(events[0] ?? "", /h1\/d1 vm\.command-accepted prepared cmd=\S+ vm\.start until /);
    assert.match(events[1] ?? "", /h1\/d1 vm\.started running/);
  });

  it("prints { view, host, events } with --json, and a coded error for an unknown VM", async () => {
    const r = await vmq(["describe", "d1", "--json"]);
    assert.equal(r.exitCode, 0, r.stderr);
    const j = JSON.parse(r.stdout) as {
      view: { vmId: string; state: string };
      host: { host: string } | null;
      events: { seq: number; event: { type: string } }[];
    };
    assert.equal(j.view.vmId, "d1");
    assert.equal(j.host?.host, "h1");
    assert.deepEqual(
      j.events.map((e) => e.event.type),
      ["vm.command-accepted", "vm.prepared", "vm.command-accepted", "vm.started"],
    );
    const missing = await vmq(["describe", "nope"]);
    assert.equal(missing.exitCode, 1);
    assert.match(missing.stderr, /^vmq: VM nope is not in the \S+ view \[vm::not-found\] — hint: /);
  });
});
