import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { runVmq } from "../helpers/cli.js";
import { Harness, SPEC, eventually, type TestNoop } from "../helpers/worker-harness.js";

/**
 * A client that gives up waiting takes its command with it: the CLI and SDK set notAfter from
 * their wait, so the command does not run later behind the user's back (unless --keep-queued).
 */
describe("commands that expire with their wait", { timeout: 180_000 }, () => {
  let h: Harness;
  let noop: TestNoop; // the host's VMs, kept across its worker's restart
  const vmq = (args: string[]) =>
    runVmq(args, { env: { VMQ_NATS_URL: h.server.url, VMQ_PREFIX: h.prefix } });

  before(async () => {
    h = await Harness.start();
    const first = await h.worker({ host: "h1" });
    const worker = first.worker;
    noop = first.noop;
    await h.client.prepare("x1", SPEC, { host: "h1" });
    await h.client.prepare("x2", SPEC, { host: "h1" });
    await worker.drain(); // the host's worker is down from here on
  });
  after(() => h.stop());

  it("a CLI wait that times out leaves nothing to run later; --keep-queued does", async () => {
    const gaveUp = await vmq(
      ["start", "x1", "--host", "h1", "--queue-for-unknown-host"].concat([
        "--wait-timeout-ms",
        "1000",
      ]),
    );
    assert.equal(gaveUp.exitCode, 4, gaveUp.stderr);
    const kept = await vmq(
      ["start", "x2", "--host", "h1", "--queue-for-unknown-host", "--keep-queued"].concat([
        "--wait-timeout-ms",
        "1000",
      ]),
    );
    assert.equal(kept.exitCode, 4, kept.stderr);
    // An SDK send that gives up does the same.
    await assert.rejects(
      h.client.send("h1", { type: "vm.suspend", vmId: "x2" }, { timeoutMs: 500 }),
      /not even accepted/,
    );

    await h.worker({ host: "h1", backend: noop }); // the worker comes back and finds the queue
    const x1 = await eventually(async () => {
      const events = (await h.client.history("h1", "x1")).map((r) => r.event);
      return events.find((e) => e.type === "vm.command-rejected");
    }, 30_000);
    assert.equal(x1.type === "vm.command-rejected" && x1.code, "command::expired");
    assert.equal(
      (await h.client.history("h1", "x1")).map((r) => r.event).at(-1)?.state,
      "prepared",
      "no effect",
    );

    const x2 = await eventually(async () => {
      const events = (await h.client.history("h1", "x2")).map((r) => r.event);
      return events.find((e) => e.type === "vm.started");
    }, 30_000);
    assert.equal(x2.state, "running", "the --keep-queued start ran when the worker came back");
    const suspend = await eventually(async () => {
      const events = (await h.client.history("h1", "x2")).map((r) => r.event);
      return events.find((e) => e.type === "vm.command-rejected");
    }, 30_000);
    assert.equal(suspend.type === "vm.command-rejected" && suspend.code, "command::expired");
  });
});
