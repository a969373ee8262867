/** `vmq dlq` as a process, on real poison messages dead-lettered by a real worker. */
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { jetstreamManager } from "@nats-io/jetstream";
import { names as namesFor } from "../../src/contracts/index.js";
import { assertOneLineError, runVmq } from "../helpers/cli.js";
import { Harness, SPEC, eventually } from "../helpers/worker-harness.js";

describe("vmq dlq (the CLI, as a process)", { timeout: 120_000 }, () => {
  let h: Harness;
  let dir: string;
  const vmq = async (args: string[]) =>
    runVmq(args, { env: { VMQ_NATS_URL: h.server.url, VMQ_PREFIX: h.prefix } });
  const json = <T>(stdout: unknown): T => JSON.parse(String(stdout)) as T;

  before(async () => {
    h = await Harness.start();
    dir = await mkdtemp(join(tmpdir(), "vmq-cli-dlq-"));
    await h.worker({ host: "h1" });
  });
  after(async () => {
    await h.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it("dlq list/show/retry/drop work on real poison messages", async () => {
    const names = namesFor(h.prefix);
    const jsm = await jetstreamManager(h.nc);
    const enc = new TextEncoder();
    await h.client.js.publish(names.cmd("h1", "p-1"), enc.encode("{not json"), {
      msgID: "poison-1",
    });
    await h.client.js.publish(names.cmd("h1", "p-2"), enc.encode("nope"), { msgID: "poison-2" });
    await eventually(
      async () =>
        (await jsm.streams.info(names.dlqStream)).state.messages >= 2 ? true : undefined,
      20_000,
      "two dead letters",
    );
    const [l, table] = await Promise.all([
      vmq(["dlq", "list", "--json"]),
      vmq(["dlq", "list", "--host", "h1"]),
    ]);
    assert.equal(l.exitCode, 0, l.stderr);
    const entries = json<{ seq: number; headers: Record<string, string>; payload: string }[]>(
      l.stdout,
    );
    const p1 = entries.find((e) => e.headers["Vmq-Dlq-Subject"] === names.cmd("h1", "p-1"));
    const p2 = entries.find((e) => e.headers["Vmq-Dlq-Subject"] === names.cmd("h1", "p-2"));
    assert.ok(p1 && p2, JSON.stringify(entries));
    assert.equal(p1.headers["Vmq-Dlq-Code"], "command::not-json");
    assert.equal(p1.payload, "{not json");
    assert.match(table.stdout, /^SEQ +AGE +SUBJECT +CODE/);
    assert.match(
      table.stdout,
      new RegExp(
        `^${p1.seq} .*${names.cmd("h1", "p-1").replace(/\./g, "\\.")} +command::not-json`,
        "m",
      ),
    );

    // Retrying the poison as it is would only dead-letter it again: refused.
    const [show, refused] = await Promise.all([
      vmq(["dlq", "show", String(p1.seq)]),
      vmq(["dlq", "retry", String(p1.seq)]),
    ]);
    assert.equal(show.exitCode, 0, show.stderr);
    assert.match(show.stdout, /^Vmq-Dlq-Code: +command::not-json$/m);
    assert.match(show.stdout, /^\{not json$/m);

    assert.equal(refused.exitCode, 2);
    assertOneLineError(refused.stderr, /still invalid.*\[dlq::still-invalid\]/);

    const fixed = join(dir, "fixed.json");
    const commandId = "fixed-p-1";
    await writeFile(
      fixed,
      JSON.stringify({
        type: "vm.prepare",
        version: 1,
        commandId,
        vmId: "p-1",
        issuedAt: new Date().toISOString(),
        spec: SPEC,
      }),
    );
    const retried = await vmq(["dlq", "retry", String(p1.seq), "--payload", fixed, "--json"]);
    assert.equal(retried.exitCode, 0, retried.stderr);
    assert.equal(json<{ commandId: string }>(retried.stdout).commandId, commandId);
    const { outcome } = await h.client.waitForOutcome("h1", "p-1", commandId, {
      timeoutMs: 15_000,
    });
    assert.equal(outcome.type, "vm.prepared");
    const [gone, drop] = await Promise.all([
      vmq(["dlq", "show", String(p1.seq)]),
      vmq(["dlq", "drop", String(p2.seq)]),
    ]);
    assert.equal(gone.exitCode, 1);
    assertOneLineError(gone.stderr, /\[dlq::not-found\]/);

    assert.equal(drop.exitCode, 0, drop.stderr);
    const after = json<{ seq: number }[]>((await vmq(["dlq", "list", "--json"])).stdout);
    assert.ok(
      !after.some((e) => e.seq === p1.seq || e.seq === p2.seq),
      "retried and dropped entries are gone",
    );
  });
});
