/**
 * A host that runs for a year: destroyed VMs past the retention window are reduced to their
 * tombstone, their events purged, their view record dropped, and the worker forgets them. A
 * command replayed after that has no effect and no second outcome; a vmId used again keeps its
 * earlier commands; a restart from a snapshot equals a full replay.
 */
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { VmTombstone } from "../../src/contracts/index.js";
import { commandDigest, toView } from "../../src/domain/index.js";
import type { Worker } from "../../src/worker/worker.js";
import { Harness, SPEC, eventually, testNoop } from "../helpers/worker-harness.js";
import { runVmq } from "../helpers/cli.js";
import { WorkerProcess } from "../helpers/worker-process.js";

const enc = new TextEncoder();

describe("worker: compaction of destroyed VMs to tombstones", { timeout: 120_000 }, () => {
  let h: Harness;
  const noop = testNoop();
  before(async () => {
    h = await Harness.start();
  });
  after(async () => h.stop());

  const worker = async (over: { retentionMs?: number; snapshots?: "on" | "off" } = {}) =>
    (
      await h.worker({
        host: "cp",
        backend: noop,
        retentionMs: over.retentionMs ?? 500,
        compactIntervalMs: 1_000,
        snapshots: over.snapshots ?? "on",
      })
    ).worker;

  const subjectCount = async (vmId: string): Promise<number> => {
    const jsm = await jetstreamManager(h.nc);
    const info = await jsm.streams.info(h.client.names.eventsStream, {
      subjects_filter: h.client.names.evt("cp", vmId),
    });
    return info.state.subjects?.[h.client.names.evt("cp", vmId)] ?? 0;
  };
  /** Messages the view bucket's stream holds under a VM's key: records and markers alike. */
  const viewMessages = async (vmId: string): Promise<number> => {
    const jsm = await jetstreamManager(h.nc);
    const bucket = h.client.names.vmsBucket;
    const subject = `$KV.${bucket}.${h.client.names.viewKey("cp", vmId)}`;
    const info = await jsm.streams.info(`KV_${bucket}`, { subjects_filter: subject });
    return info.state.subjects?.[subject] ?? 0;
  };
  const tombstone = async (vmId: string): Promise<VmTombstone | undefined> => {
    const kv = await new Kvm(h.nc).open(h.client.names.tombstonesBucket);
    const e = await kv.get(`cp.${vmId}`);
    return e?.operation === "PUT" ? VmTombstone.parse(e.json()) : undefined;
  };
  const effects = (vmId: string) =>
    noop.calls.filter((c) => c.vmId === vmId && c.op !== "state").map((c) => c.op);
  /** Publishes a command again under a new message id (a scheduler's late retry). */
  const republish = async (body: Record<string, unknown>) =>
    h.client.js.publish(
      h.client.names.cmd("cp", String(body.vmId)),
      enc.encode(JSON.stringify(body)),
    );

  let w: Worker;
  const ids: Record<string, string> = {};

  it("reduces a destroyed VM past its window to its tombstone: events purged, view dropped, forgotten", async () => {
    w = await worker();
    ids["vm.prepare"] = (
      await h.client.send("cp", { type: "vm.prepare", vmId: "cp-1", spec: SPEC })
    ).commandId;
    ids["vm.start"] = (await h.client.send("cp", { type: "vm.start", vmId: "cp-1" })).commandId;
    ids["vm.destroy"] = (await h.client.send("cp", { type: "vm.destroy", vmId: "cp-1" })).commandId;
    // A VM still alive is never compacted.
    await h.client.send("cp", { type: "vm.prepare", vmId: "cp-live", spec: SPEC });
    await eventually(() => (w.stats.compacted >= 1 ? true : undefined), 15_000, "a compaction");
    const t = await tombstone("cp-1");
    assert.ok(t, "the tombstone is written");
    assert.deepEqual(
      [...t.seen].sort(),
      Object.values(ids).map(commandDigest).sort(),
      "it remembers every command, as digests",
    );
    assert.equal(await subjectCount("cp-1"), 0, "its events are purged");
    assert.equal(w.registry?.has("cp-1"), false, "the worker forgot it");
    assert.equal(await h.client.get("cp-1"), undefined, "its view record is gone");
    // Not even a purge marker stays: markers of every VM ever compacted would slow each
    // prepare's fleet-wide `*.<vmId>` read on nats-server 2.9.
    assert.equal(await viewMessages("cp-1"), 0, "nothing is left under its view key");
    assert.equal(await viewMessages("cp-live"), 1, "a live VM keeps its record");
    assert.equal(w.registry?.get("cp-live").state, "prepared");
    assert.ok((await subjectCount("cp-live")) > 0, "a live VM keeps its events");
  });

  it("vmq events on a compacted VM says it was compacted, instead of printing nothing", async () => {
    const r = await runVmq(["events", "cp-1", "--nats", h.server.url, "--prefix", h.prefix]);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(r.stdout, "");
    assert.match(r.stderr, /VM cp-1 was destroyed at .* and compacted at .* on host cp/);
    assert.match(r.stderr, /3 command\(s\) are remembered/);
  });

  it("a command replayed after compaction has no effect and no outcome", async () => {
    const before = effects("cp-1").length;
    const dupes = w.stats.duplicates;
    await republish({
      type: "vm.start",
      version: 1,
      commandId: ids["vm.start"],
      vmId: "cp-1",
      issuedAt: new Date().toISOString(),
    });
    await eventually(() => (w.stats.duplicates > dupes ? true : undefined), 15_000, "a duplicate");
    assert.equal(effects("cp-1").length, before, "no second effect");
    assert.equal(await subjectCount("cp-1"), 0, "no second outcome (nothing appended)");
  });

  it("a vmId used again starts with its tombstone, and keeps refusing the earlier commands", async () => {
    const r = await h.client.send("cp", { type: "vm.prepare", vmId: "cp-1", spec: SPEC });
    assert.equal(r.outcome.type, "vm.prepared");
    const history = await h.client.history("cp", "cp-1");
    assert.deepEqual(
      history.map((e) => e.event.type),
      ["vm.tombstoned", "vm.command-accepted", "vm.prepared"],
    );
    const dupes = w.stats.duplicates;
    await republish({
      type: "vm.destroy",
      version: 1,
      commandId: ids["vm.destroy"],
      vmId: "cp-1",
      issuedAt: new Date().toISOString(),
    });
    await eventually(() => (w.stats.duplicates > dupes ? true : undefined), 15_000, "a duplicate");
    assert.equal(w.registry?.get("cp-1").state, "prepared", "the old destroy did not run again");
    // A restart (full replay, and from a snapshot) gives the same VMs and the same memory.
    await w.drain();
    const full = await worker({ snapshots: "off", retentionMs: 0 });
    const seenFull = summary(full);
    await full.drain();
    const fromSnap = await worker({ snapshots: "on", retentionMs: 0 });
    assert.equal(fromSnap.stats.replayFrom, "snapshot");
    assert.deepEqual(summary(fromSnap), seenFull);
    assert.equal(
      fromSnap.registry?.get("cp-1").seenDigests?.has(commandDigest(ids["vm.destroy"] ?? "")),
      true,
    );
    w = fromSnap;
  });

  it("never compacts a VM with a command in its lane", async () => {
    await w.drain();
    const slow = testNoop();
    const w2 = (
      await h.worker({
        host: "cs",
        backend: slow,
        retentionMs: 1,
        compactIntervalMs: 1_000,
      })
    ).worker;
    await h.client.send("cs", { type: "vm.prepare", vmId: "cs-1", spec: SPEC });
    await h.client.send("cs", { type: "vm.destroy", vmId: "cs-1" });
    // The prepare that reuses the vmId is held in the backend across several sweeps.
    await eventually(() => (w2.stats.compacted >= 1 ? true : undefined), 15_000, "compacted");
    slow.latencyMs = 2_500;
    const p = await h.client.send("cs", { type: "vm.prepare", vmId: "cs-1", spec: SPEC });
    slow.latencyMs = 0;
    assert.equal(p.outcome.type, "vm.prepared");
    assert.equal(w2.registry?.get("cs-1").state, "prepared");
    const types = (await h.client.history("cs", "cs-1")).map((e) => e.event.type);
    assert.deepEqual(types, ["vm.tombstoned", "vm.command-accepted", "vm.prepared"]);
    assert.equal(w2.stats.compacted, 1, "compacted once, before the new life began");
    await w2.drain();
  });

  it("a command that arrives while a compaction is stopped midway waits for it, then sees the tombstone (failpoint)", async () => {
    const host = "cr";
    const vmId = "cr-1";
    const dir = await mkdtemp(join(tmpdir(), "vmq-compact-"));
    const args = [
      ...["--nats", h.server.url, "--prefix", h.prefix, "--host", host, "--data-dir", dir],
      ...["--noop-state-dir", join(dir, "noop"), "--retention-ms", "300"],
      ...["--compact-interval-ms", "1000", "--log-level", "info"],
    ];
    const calls = async () =>
      (await readFile(join(dir, "noop", "calls.log"), "utf8").catch(() => ""))
        .split("\n")
        .filter((l) => l.endsWith(` ${vmId}`));
    // The worker stops itself (SIGSTOP) inside its first compaction, after the tombstone is
    // written and before the view, the purge and the forget.
    const w = new WorkerProcess(args, { VMQ_FAILPOINTS: "after-tombstone~1" }).start();
    try {
      await eventually(() => (w.ready ? true : undefined), 30_000, "worker ready").catch(
        (e: unknown) => {
          throw new Error(`${String(e)}: ${w.output}`);
        },
      );
      await h.client.send(host, { type: "vm.prepare", vmId, spec: SPEC });
      const destroy = await h.client.send(host, { type: "vm.destroy", vmId });
      await eventually(
        () => (w.output.includes("after-tombstone (stalled)") ? true : undefined),
        30_000,
        "stopped in the compaction",
      );
      const effectsBefore = await calls();
      // Meanwhile: a scheduler's late retry of the destroy, and a new life for the vmId.
      await republish({
        type: "vm.destroy",
        version: 1,
        commandId: destroy.commandId,
        vmId,
        issuedAt: new Date().toISOString(),
      });
      const prepare = await h.client.publish(host, { type: "vm.prepare", vmId, spec: SPEC });
      w.proc?.kill("SIGCONT");
      const out = await h.client.waitForOutcome(host, vmId, prepare.command.commandId, {
        timeoutMs: 30_000,
      });
      assert.equal(out.outcome.type, "vm.prepared");
      // The compaction finished first (the lane serialises them): the old life is purged, the
      // new one begins with its tombstone, the old destroy had no effect and no outcome.
      const types = (await h.client.history(host, vmId)).map((e) => e.event.type);
      assert.deepEqual(types, ["vm.tombstoned", "vm.command-accepted", "vm.prepared"]);
      assert.deepEqual((await calls()).slice(effectsBefore.length), [`prepare ${vmId}`]);
      assert.equal((await h.client.get(vmId))?.state, "prepared");
    } finally {
      await w.kill("SIGKILL");
      await rm(dir, { recursive: true, force: true });
    }
  });

  for (const point of ["after-tombstone", "after-purge"] as const) {
    it(`finishes a compaction interrupted by a SIGKILL ${point.replace("-", " ")}`, async () => {
      const host = point === "after-tombstone" ? "ck" : "cq";
      const dir = await mkdtemp(join(tmpdir(), "vmq-compact-"));
      const args = [
        ...["--nats", h.server.url, "--prefix", h.prefix, "--host", host, "--data-dir", dir],
        ...["--noop-state-dir", join(dir, "noop"), "--retention-ms", "300"],
        ...["--compact-interval-ms", "1000", "--log-level", "info"],
      ];
      const dying = new WorkerProcess(args, { VMQ_FAILPOINTS: `${point}@1` }).start();
      try {
        await eventually(() => (dying.ready ? true : undefined), 30_000, "worker ready");
        await h.client.send(host, { type: "vm.prepare", vmId: `${host}-1`, spec: SPEC });
        await h.client.send(host, { type: "vm.destroy", vmId: `${host}-1` });
        await eventually(() => (dying.dead ? true : undefined), 30_000, "killed at the failpoint");
      } finally {
        if (!dying.dead) await dying.kill();
      }
      await dying.ended();
      assert.deepEqual(dying.failpoints, [point], "killed at that step");
      const kv = await new Kvm(h.nc).open(h.client.names.tombstonesBucket);
      assert.ok(await kv.get(`${host}.${host}-1`), "the tombstone was written first");
      const restarted = new WorkerProcess(args).start();
      try {
        await eventually(
          async () => {
            const jsm = await jetstreamManager(h.nc);
            const subject = h.client.names.evt(host, `${host}-1`);
            const info = await jsm.streams.info(h.client.names.eventsStream, {
              subjects_filter: subject,
            });
            const left = info.state.subjects?.[subject] ?? 0;
            return left === 0 && (await h.client.get(`${host}-1`)) === undefined ? true : undefined;
          },
          30_000,
          "the compaction finished after the restart",
        );
        // And the VM is still refused a second run of what it did.
        const again = await h.client.send(host, {
          type: "vm.prepare",
          vmId: `${host}-1`,
          spec: SPEC,
        });
        assert.equal(again.outcome.type, "vm.prepared");
        const types = (await h.client.history(host, `${host}-1`)).map((e) => e.event.type);
        assert.equal(types[0], "vm.tombstoned");
      } finally {
        await restarted.kill("SIGTERM");
        await rm(dir, { recursive: true, force: true });
      }
    });
  }

  /** What a restart must give back: each VM's view and everything it remembers. */
  function summary(x: Worker): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const vm of x.registry?.all() ?? [])
      out[vm.vmId] = {
        view: toView(vm) ?? null,
        seen: [...vm.seenCommands].sort(),
        digests: [...(vm.seenDigests ?? [])].sort(),
      };
    return out;
  }
});
