/**
 * A stop or destroy interrupted by a worker crash still escalates (issue 19): a real QEMU guest
 * that ignores the power button (and, for the last step, a QEMU frozen with SIGSTOP, which
 * ignores SIGTERM too), the worker SIGKILLed at each step of the escalation (failpoints in
 * qemu-stop.ts), then restarted: the redelivered command resumes with what is left of its
 * window and ends the guest with the step that works, before the intent's deadline.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { NatsConnection } from "@nats-io/transport-node";
import { VmqClient } from "../../src/client/index.js";
import type { StopHow, VmEvent } from "../../src/contracts/index.js";
import { STOP_ESCALATION_MS } from "../../src/domain/index.js";
import { NatsServer, testPrefix } from "../helpers/nats-server.js";
import { cleanupDataDir, qemuTestGuest, type QemuGuestImages } from "../helpers/qemu-guest.js";
import { skipWhenMissing, type MissingInput } from "../helpers/required.js";
import { WorkerProcess } from "../helpers/worker-process.js";
import { eventually } from "../helpers/worker-harness.js";
import { alive } from "../helpers/pids.js";

/**
 * The redelivery after the crash comes at most one ack_wait after the kill, and the deadline
 * keeps that much room; 10 s also covers a worker restart on a loaded machine.
 */
const ACK_WAIT_MS = 10_000;
const TIMEOUT_MS = 3_000;

interface Case {
  point: "stop-graceful" | "stop-sigterm" | "stop-sigkill";
  type: "vm.stop" | "vm.destroy";
  /** Freeze QEMU (SIGSTOP) before the stop: neither the button nor SIGTERM ends it. */
  wedge: boolean;
  /** The step that ends it, recorded in vm.stopped. */
  how: StopHow;
}
const CASES: Case[] = [
  { point: "stop-graceful", type: "vm.stop", wedge: false, how: "sigterm" },
  { point: "stop-sigterm", type: "vm.stop", wedge: false, how: "sigterm" },
  { point: "stop-sigterm", type: "vm.destroy", wedge: false, how: "sigterm" },
  { point: "stop-sigkill", type: "vm.stop", wedge: true, how: "sigkill" },
];

describe(
  "a stop interrupted by a worker crash still escalates (real QEMU)",
  { timeout: 600_000 },
  () => {
    let guest: QemuGuestImages | undefined;
    let missing: MissingInput | undefined;
    let server: NatsServer;
    let nc: NatsConnection;
    let client: VmqClient;
    let dir: string;
    let args: string[];
    let worker: WorkerProcess | undefined;
    const frozen: number[] = [];

    /** A worker started after `since` has its host record up (a dead one's lingers). */
    const ready = async (since: string) =>
      eventually(
        async () =>
          (await client.hosts()).find(
            (x) => x.host === "s1" && x.state === "running" && x.startedAt > since,
          ),
        60_000,
        "worker ready",
      );
    /** The last worker's start time; "" before the first one made the hosts bucket. */
    const startedAt = async () =>
      (await client.hosts().catch(() => [])).find((x) => x.host === "s1")?.startedAt ?? "";
    /** Replaces the running worker with one that has these failpoints. */
    const restart = async (failpoints?: string) => {
      const since = await startedAt();
      await worker?.kill("SIGTERM");
      const next = new WorkerProcess(args, failpoints ? { VMQ_FAILPOINTS: failpoints } : {});
      worker = next.start();
      // A worker that never comes up says why: its own log, not only a timeout.
      await ready(since).catch((e: Error) => {
        throw new Error(`${e.message}; the worker's log ends:\n${next.output.slice(-6_000)}`);
      });
      return next;
    };

    before(async () => {
      const g = await qemuTestGuest();
      if ("unavailable" in g) {
        missing = { ...g.unavailable, needed: "worker with QEMU" };
        return;
      }
      guest = g;
      server = await NatsServer.start();
      nc = await server.connect();
      const prefix = testPrefix();
      client = new VmqClient(nc, { prefix, timeoutMs: 120_000 });
      dir = await mkdtemp(join(tmpdir(), "vmq-wsc-"));
      args = [
        ...["--nats", server.url, "--prefix", prefix, "--host", "s1", "--backend", "qemu"],
        ...["--image-roots", g.dir, "--data-dir", dir, "--log-level", "info"],
        ...["--ack-wait-ms", String(ACK_WAIT_MS), "--heartbeat-ms", "500"],
        // A frozen QEMU never answers QMP: each command it is sent costs this long.
        ...["--qemu-qmp-timeout-ms", "1000", "--qemu-powerdown-retry-ms", "500"],
        ...["--qemu-kill-grace-ms", "2000"],
      ];
    });
    after(async () => {
      await worker?.kill();
      if (!guest) return;
      for (const pid of frozen) if (alive(pid)) process.kill(pid, "SIGKILL");
      await nc.close();
      await server.stop();
      await cleanupDataDir(join(dir, "qemu"));
      await rm(dir, { recursive: true, force: true });
    });

    CASES.forEach((c, i) => {
      const what = `${c.type} of a ${c.wedge ? "frozen QEMU" : "stubborn guest"}, worker SIGKILLed at ${c.point}: resumed, ended by ${c.how}`;
      it(what, async (t) => {
        if (skipWhenMissing(t, missing) || !guest) return;
        const vmId = `sc-${i}`;
        const dying = await restart(`${c.point}@1`);
        const spec = { name: vmId, imagePath: guest.stubbornImage, vcpus: 1, memoryMb: 128 };
        assert.equal(
          (await client.send("s1", { type: "vm.prepare", vmId, spec })).outcome.type,
          "vm.prepared",
        );
        const started = (await client.send("s1", { type: "vm.start", vmId })).outcome;
        const pid = started.type === "vm.started" ? started.handle?.pid : undefined;
        assert.ok(pid && alive(pid), "a real QEMU runs the guest");
        if (c.wedge) {
          frozen.push(pid);
          process.kill(pid, "SIGSTOP");
        }

        const body =
          c.type === "vm.stop"
            ? ({ type: c.type, vmId, timeoutMs: TIMEOUT_MS, force: "after-timeout" } as const)
            : ({ type: c.type, vmId, timeoutMs: TIMEOUT_MS } as const);
        const t0 = Date.now();
        const mark = (what: string) => t.diagnostic(`${what} at +${Date.now() - t0} ms`);
        const { command } = await client.publish("s1", body);
        // The worker kills itself at the step; the next one resumes the command.
        await Promise.race([
          dying.ended(),
          new Promise((_, reject) =>
            setTimeout(() => reject(new Error(`${c.point} never fired:\n${dying.output}`)), 60_000),
          ),
        ]);
        mark("the worker died");
        assert.deepEqual(dying.failpoints, [c.point], "the worker died at that step");
        assert.ok(alive(pid), "the guest outlived the worker");
        worker = undefined;
        const revived = await restart();
        mark("the next worker is ready");

        const found = await client.waitForOutcome("s1", vmId, command.commandId, {
          timeoutMs: 120_000,
          fromSeq: 0,
        });
        const outcome: VmEvent = found.outcome;
        const history = (await client.history("s1", vmId)).map((e) => e.event);
        const accepted = history.find(
          (e) => e.type === "vm.command-accepted" && e.causationId === command.commandId,
        );
        assert.ok(accepted?.type === "vm.command-accepted");
        assert.equal(
          Date.parse(accepted.deadline) - Date.parse(accepted.at),
          TIMEOUT_MS + STOP_ESCALATION_MS + ACK_WAIT_MS,
          "the deadline keeps room for the escalation and for one crash (ack_wait)",
        );
        // The resumed run was given what was left of the window, not the whole window again,
        // and every escalation step in full (the worker logs the plan it resumed with).
        const resumed = revived.output
          .split("\n")
          .filter((l) => l.includes(command.commandId) && l.includes("resuming a command"))
          .map(
            (l) =>
              JSON.parse(l) as {
                time: number;
                timeoutMs: number;
                escalation: { sigtermGraceMs: number; sigkillWaitMs: number };
              },
          )[0];
        assert.ok(resumed, `the restarted worker resumed the command:\n${revived.output}`);
        const since = Date.parse(accepted.at);
        const { timeoutMs: window, escalation: steps } = resumed;
        assert.ok(
          window <= Math.max(0, since + TIMEOUT_MS - resumed.time) + 100,
          `window ${window} ms, resumed ${resumed.time - since} ms after acceptance`,
        );
        // Every step still fits before the deadline (in full unless the restart came very late).
        assert.ok(steps.sigtermGraceMs > 0 && steps.sigkillWaitMs > 0, JSON.stringify(steps));
        assert.ok(
          resumed.time + window + steps.sigtermGraceMs + steps.sigkillWaitMs <=
            Date.parse(accepted.deadline) + 100,
          JSON.stringify(resumed),
        );
        const expected = c.type === "vm.stop" ? "vm.stopped" : "vm.destroyed";
        assert.equal(outcome.type, expected, JSON.stringify(outcome));
        if (outcome.type === "vm.stopped") {
          assert.equal(outcome.how, c.how, "the step that ended it, run by the resumed stop");
          assert.notEqual(outcome.reconciled, true, "ended by the resumed command, not found so");
        }
        assert.ok(Date.parse(outcome.at) <= Date.parse(accepted.deadline), "before the deadline");
        await eventually(() => (alive(pid) ? undefined : true), 10_000, "QEMU gone");
        if (c.type === "vm.stop") {
          const d = await client.send("s1", { type: "vm.destroy", vmId });
          assert.equal(d.outcome.type, "vm.destroyed");
        }
      });
    });
  },
);
