import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { VmEvent } from "../../src/contracts/index.js";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Harness, SPEC, eventually, type TestNoop } from "../helpers/worker-harness.js";
import { WorkerProcess } from "../helpers/worker-process.js";

const HOSTS = ["fa", "fb", "fc"];

describe(
  "a fleet: 3 workers on one NATS, placement, SDK outcomes, watch, list",
  { timeout: 240_000 },
  () => {
    let h: Harness;
    const backends = new Map<string, TestNoop>();
    before(async () => {
      h = await Harness.start();
      for (const host of HOSTS) {
        const { noop } = await h.worker({ host, noop: { latencyMs: 5 }, heartbeatMs: 300 });
        backends.set(host, noop); // the same "hypervisor" survives its worker's restart
      }
      // Placement only picks hosts that are ready ("running"), not ones still replaying.
      await eventually(async () =>
        (await h.client.hosts()).filter((x) => x.state === "running").length === 3
          ? true
          : undefined,
      );
    });
    after(async () => h.stop());

    it("spreads 300 VMs, returns every outcome, and watch/list agree with the event streams", async () => {
      const seen: { event: VmEvent; seq: number }[] = [];
      const ac = new AbortController();
      const watching = (async () => {
        for await (const e of h.client.watch({}, { newOnly: true, signal: ac.signal }))
          seen.push(e);
      })();
      const results = await Promise.all(
        Array.from({ length: 300 }, async (_, i) => {
          const vmId = `fleet-${i}`;
          const p = await h.client.prepare(vmId, SPEC);
          const s = await h.client.start(vmId, { host: p.outcome.host });
          return { vmId, host: p.outcome.host, prepared: p.outcome.type, started: s.outcome.type };
        }),
      );
      assert.ok(results.every((r) => r.prepared === "vm.prepared" && r.started === "vm.started"));
      const perHost = Object.fromEntries(
        HOSTS.map((x) => [x, results.filter((r) => r.host === x).length]),
      );
      for (const x of HOSTS)
        assert.ok((perHost[x] ?? 0) >= 60, `placement spread the VMs: ${JSON.stringify(perHost)}`);

      // watch saw every event (2 commands x 2 events x 300), in stream order
      await eventually(() => (seen.length >= 1200 ? true : undefined), 30_000, "watch caught up");
      ac.abort();
      await watching;
      const seqs = seen.map((e) => e.seq);
      assert.deepEqual(
        seqs,
        [...seqs].sort((a, b) => a - b),
      );
      assert.equal(
        new Set(seen.map((e) => `${e.event.vmId}:${e.event.type}:${e.event.causationId}`)).size,
        1200,
      );

      // list (the view) agrees with the streams
      const list = await eventually(
        async () => {
          const l = await h.client.list();
          return l.length === 300 && l.every((v) => v.state === "running") ? l : undefined;
        },
        30_000,
        "view up to date",
      );
      for (const v of list) {
        const last = seen.filter((e) => e.event.vmId === v.vmId).at(-1);
        assert.equal(v.lastEventSeq, last?.seq, `${v.vmId} view is at its last event`);
        assert.equal(v.host, results.find((r) => r.vmId === v.vmId)?.host);
      }
    });

    it("commands for a host whose worker is down wait durably and run when it returns; others go on", async () => {
      await h.client.prepare("wait-1", SPEC, { host: "fb" });
      const fb = h.workers.find((w) => w.config.host === "fb" && w.state === "running");
      assert.ok(fb);
      await fb.drain();
      const queued = await Promise.all(
        ["wait-1", "wait-1"].map(async (vmId, i) =>
          h.client.publish(
            "fb",
            i === 0 ? { type: "vm.start", vmId } : { type: "vm.suspend", vmId },
          ),
        ),
      );
      const other = await h.client.prepare("other-1", SPEC, { host: "fa" });
      assert.equal(other.outcome.type, "vm.prepared", "the other hosts are not affected");
      assert.equal(
        (await h.client.history("fb", "wait-1")).length,
        2,
        "nothing ran for the stopped host",
      );
      const fbBackend = backends.get("fb");
      assert.ok(fbBackend);
      await h.worker({ host: "fb", backend: fbBackend });
      for (const q of queued) {
        const out = await h.client.waitForOutcome("fb", "wait-1", q.command.commandId, {
          timeoutMs: 20_000,
        });
        assert.ok(
          ["vm.started", "vm.suspended"].includes(out.outcome.type),
          JSON.stringify(out.outcome),
        );
      }
      const history = (await h.client.history("fb", "wait-1")).map((e) => e.event.type);
      assert.deepEqual(
        history.slice(-4),
        ["vm.command-accepted", "vm.started", "vm.command-accepted", "vm.suspended"],
        "in order",
      );
    });

    it("a worker SIGKILLed with commands queued catches up on all of them, in order, once restarted", async () => {
      const dir = await mkdtemp(join(tmpdir(), "vmq-fleet-kill-"));
      const args = [
        ...["--nats", h.server.url, "--prefix", h.prefix, "--host", "fk", "--data-dir", dir],
        ...["--noop-state-dir", join(dir, "noop"), "--noop-latency-ms", "150"],
        ...["--ack-wait-ms", "3000", "--heartbeat-ms", "300", "--log-level", "warn"],
      ];
      const running = () =>
        eventually(
          async () =>
            (await h.client.hosts()).find((x) => x.host === "fk" && x.state === "running"),
          30_000,
          "worker fk ready",
        );
      let worker = new WorkerProcess(args).start();
      try {
        await running();
        const vms = ["fk-1", "fk-2", "fk-3"];
        const plan = ["vm.prepare", "vm.start", "vm.suspend", "vm.resume", "vm.stop"] as const;
        const sent = new Map<string, string[]>();
        const publish = async (type: (typeof plan)[number]) => {
          for (const vmId of vms) {
            const body = type === "vm.prepare" ? { type, vmId, spec: SPEC } : { type, vmId };
            const { command } = await h.client.publish("fk", body);
            sent.set(vmId, [...(sent.get(vmId) ?? []), command.commandId]);
          }
        };
        for (const type of plan.slice(0, 3)) await publish(type);
        // Killed while those are queued and in flight; more arrive while it is dead.
        await eventually(async () =>
          (await h.client.history("fk", "fk-1")).length >= 2 ? true : undefined,
        );
        await worker.kill("SIGKILL");
        for (const type of plan.slice(3)) await publish(type);
        worker = new WorkerProcess(args).start();
        for (const [vmId, ids] of sent) {
          for (const id of ids) {
            const r = await h.client.waitForOutcome("fk", vmId, id, { timeoutMs: 60_000 });
            assert.ok(
              !["vm.command-failed", "vm.command-rejected"].includes(r.outcome.type),
              `${vmId}: ${JSON.stringify(r.outcome)}`,
            );
          }
          const outcomes = (await h.client.history("fk", vmId))
            .filter((e) => e.event.causationId && e.event.type !== "vm.command-accepted")
            .map((e) => e.event.causationId);
          assert.deepEqual(outcomes, ids, `${vmId}: one outcome per command, in publish order`);
        }
      } finally {
        await worker.kill("SIGKILL");
        await rm(dir, { recursive: true, force: true });
      }
    });
  },
);
