/**
 * `vmq move <vm> --to <host>` with a real nats-server and real worker processes (Noop backend,
 * its state in a directory that outlives the worker): a running VM moves from ha to hb and ends
 * running on hb only, destroyed on ha, its events on both hosts tied by the move's id; the CLI
 * SIGKILLed after each step and run again; the source's worker SIGKILLed half-way through
 * sending the disk, and inside its stop, its export and its destroy, the target's inside its
 * prepare and inside its start, each restarted while the move waits; a scheduler's start
 * refused on the source while its disk travels; and a step failing before the target runs the
 * VM undoes the move. A moved VM's export stays in the images bucket while it runs from it
 * (refused by `vmq image rm`, kept by `vmq image prune`) and goes when it moves again or, by
 * `vmq image prune`, once it is destroyed.
 */
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { move, VmqClient, type PruneResult } from "../../src/client/index.js";
import { ImageStore } from "../../src/client/images/image-store.js";
import type { MoveRecord, VmEvent } from "../../src/contracts/index.js";
import { isVmqError } from "../../src/lib/errors.js";
import { runVmq } from "../helpers/cli.js";
import { NatsServer, testPrefix } from "../helpers/nats-server.js";
import { WorkerProcess } from "../helpers/worker-process.js";
import { SPEC, eventually } from "../helpers/worker-harness.js";

describe("vmq move: a VM moved cold between two live hosts", { timeout: 600_000 }, () => {
  let server: NatsServer;
  let dir: string;
  const procs: WorkerProcess[] = [];

  before(async () => {
    server = await NatsServer.start();
    dir = await mkdtemp(join(tmpdir(), "vmq-move-"));
  });
  after(async () => {
    for (const p of procs) await p.kill().catch(() => undefined);
    await server?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  const worker = (prefix: string, host: string, env: Record<string, string> = {}) => {
    const data = join(dir, prefix, host);
    const w = new WorkerProcess(
      [
        ...["--nats", server.url, "--prefix", prefix, "--host", host],
        ...["--data-dir", data, "--noop-state-dir", join(data, "noop")],
        ...["--noop-latency-ms", "5", "--heartbeat-ms", "300", "--ack-wait-ms", "2000"],
        ...["--log-level", "info"],
      ],
      env,
    ).start();
    procs.push(w);
    return w;
  };
  const up = async (w: WorkerProcess) =>
    eventually(() => w.ready || undefined, 60_000, "worker running");
  const vmq = (prefix: string, args: string[], env: Record<string, string> = {}) =>
    runVmq([...args, "--nats", server.url, "--prefix", prefix], { timeout: 180_000, env });
  const calls = async (prefix: string, host: string) =>
    (await readFile(join(dir, prefix, host, "noop", "calls.log"), "utf8").catch(() => ""))
      .split("\n")
      .filter(Boolean);

  /** A fresh prefix with hosts ha and hb running, and a client on it. */
  const twoHosts = async (
    env: { ha?: Record<string, string>; hb?: Record<string, string> } = {},
  ) => {
    const prefix = testPrefix();
    const nc = await server.connect();
    const client = new VmqClient(nc, { prefix, timeoutMs: 60_000 });
    const a = worker(prefix, "ha", env.ha);
    const b = worker(prefix, "hb", env.hb);
    await Promise.all([up(a), up(b)]);
    return { prefix, nc, client, a, b };
  };

  const runningOn = async (client: VmqClient, host: string, vmId: string) => {
    await client.prepare(vmId, { ...SPEC, name: vmId }, { host });
    assert.equal((await client.start(vmId, { host })).outcome.type, "vm.started");
  };

  /** What each host's events say of the VM now (its last state there, or none). */
  const statesOf = async (client: VmqClient, vmId: string) => {
    const last = async (host: string) =>
      (await client.history(host, vmId))
        .filter((e) => e.event.type !== "vm.command-rejected")
        .at(-1)?.event.state;
    return { ha: await last("ha"), hb: await last("hb") };
  };

  /** Exactly one copy runs, on hb; ha's is destroyed; the view says hb. */
  const movedToB = async (client: VmqClient, vmId: string) => {
    assert.deepEqual(await statesOf(client, vmId), { ha: "destroyed", hb: "running" });
    // A move by another process (the CLI): each worker writes its view record a moment after
    // its outcome, so the view is awaited (bounded); the events above are the truth.
    const listed = async () =>
      JSON.stringify(
        (await client.list()).filter((x) => x.vmId === vmId).map((x) => [x.host, x.state]),
      );
    await eventually(
      async () => ((await listed()) === JSON.stringify([["hb", "running"]]) ? true : undefined),
      15_000,
      `${vmId} listed running on hb only`,
    );
    const v = await client.get(vmId);
    assert.equal(v?.host, "hb");
    assert.equal(v?.state, "running");
  };

  /**
   * The moves' images left are exactly `images` (the exports VMs now run from: a moved VM's
   * base), and the images stream holds no chunk of anything else (an undone move, a dead
   * export, an earlier move's export).
   */
  const leftOnly = async (nc: NatsConnection, prefix: string, images: (string | undefined)[]) => {
    const store = new ImageStore(nc, { prefix });
    const left = (await store.list()).filter((i) => i.name.startsWith("move-"));
    assert.deepEqual(left.map((i) => `${i.name}@${i.digest}`).sort(), [...images].sort());
    const nuids = await Promise.all(
      left.map(async (i) => (await store.resolve(`${i.name}@${i.digest}`)).nuid),
    );
    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams.info(`OBJ_${prefix}-images`, {
      subjects_filter: `$O.${prefix}-images.C.*`,
    });
    const chunked = Object.keys(info.state.subjects ?? {}).map((c) =>
      c.slice(c.lastIndexOf(".") + 1),
    );
    assert.deepEqual(chunked.sort(), nuids.sort());
  };

  it("moves a running VM: running on hb only, destroyed on ha, events tied by the move's id", async () => {
    const { prefix, nc, client } = await twoHosts();
    try {
      await runningOn(client, "ha", "web");
      const r = await vmq(prefix, ["move", "web", "--to", "hb", "--json"]);
      assert.equal(r.exitCode, 0, r.stderr);
      const rec = JSON.parse(r.stdout) as MoveRecord;
      assert.equal(rec.step, "done");
      assert.equal(rec.was, "running");
      assert.equal(rec.disk?.format, "placeholder");
      assert.match(rec.image ?? "", /^move-web@sha256:[0-9a-f]{64}$/);
      await movedToB(client, "web");

      // Every command of the move, on both hosts, carries its id; so do their events.
      const tied = async (host: string) =>
        (await client.history(host, "web"))
          .map((e) => e.event)
          .filter((e) => e.causationId?.startsWith(`move-${rec.id}-`));
      const onA = await tied("ha");
      const onB = await tied("hb");
      for (const e of [...onA, ...onB]) assert.equal(e.correlationId, rec.id, e.type);
      const outcomes = (es: VmEvent[]) =>
        es.filter((e) => e.type !== "vm.command-accepted").map((e) => e.type);
      assert.deepEqual(outcomes(onA), ["vm.stopped", "vm.disk-exported", "vm.destroyed"]);
      assert.deepEqual(outcomes(onB), ["vm.prepared", "vm.started"]);
      const prepared = onB.find((e) => e.type === "vm.prepared");
      assert.deepEqual(prepared?.type === "vm.prepared" && prepared.origin, {
        kind: "move",
        fromHost: "ha",
        toHost: "hb",
        moveId: rec.id,
      });
      assert.ok(prepared?.type === "vm.prepared" && prepared.spec?.image === rec.image);
      const exported = onA.find((e) => e.type === "vm.disk-exported");
      assert.equal(exported?.type === "vm.disk-exported" && exported.disk.digest, rec.disk?.digest);

      // The hypervisors saw each step once; hb fetched the exported image into its cache.
      assert.deepEqual((await calls(prefix, "ha")).slice(-3), [
        "stop web",
        "export-disk web",
        "destroy web",
      ]);
      assert.deepEqual(await calls(prefix, "hb"), ["prepare web", "start web"]);
      // The export stays while the VM runs from it: an evacuation of hb would need it.
      await leftOnly(nc, prefix, [rec.image]);

      // The VM's commands now go to hb without naming it; a move back to ha works too.
      assert.equal((await client.stop("web", { force: "now" })).host, "hb");
      const back = await move(client, "web", { to: "ha" });
      assert.equal(back.step, "done");
      assert.equal(back.was, "stopped");
      assert.deepEqual(await statesOf(client, "web"), { ha: "prepared", hb: "destroyed" });
      assert.equal((await client.get("web"))?.host, "ha");
      // The first export went with hb's copy; the VM runs from the second.
      await leftOnly(nc, prefix, [back.image]);
      // A move to where it is, or of a VM that does not exist, is refused with a code.
      const same = await vmq(prefix, ["move", "web", "--to", "ha"]);
      assert.equal(same.exitCode, 1);
      assert.match(same.stderr, /move::same-host/);
      const none = await vmq(prefix, ["move", "nope", "--to", "hb"]);
      assert.match(none.stderr, /client::vm-unknown/);
      // Removing the image a VM runs from is refused, unless forced; prune keeps it too.
      const rmUsed = await vmq(prefix, ["image", "rm", back.image!]);
      assert.equal(rmUsed.exitCode, 1, rmUsed.stderr);
      assert.match(rmUsed.stderr, /is the base of 1 VM\(s\) not destroyed: web \[image::in-use\]/);
      // `image ls -o wide` says who needs it.
      const usedBy = async () => {
        const ls = await vmq(prefix, ["image", "ls", "-o", "wide"]);
        assert.equal(ls.exitCode, 0, ls.stderr);
        const [head, ...rows] = ls.stdout.trim().split("\n");
        assert.match(head ?? "", /USED BY$/);
        return rows.filter((r) => r.startsWith("move-web ")).map((r) => r.split(/\s+/).at(-1));
      };
      assert.deepEqual(await usedBy(), ["web"]);
      const keep = await vmq(prefix, ["image", "prune", "--json"]);
      assert.equal(keep.exitCode, 0, keep.stderr);
      const kept = JSON.parse(keep.stdout) as PruneResult;
      assert.deepEqual([kept.removed.length, kept.kept.map((i) => i.name)], [0, ["move-web"]]);
      await leftOnly(nc, prefix, [back.image]);
      // Once the VM is destroyed, prune removes its export (a dry run first says so only).
      assert.equal((await client.destroy("web")).outcome.type, "vm.destroyed");
      assert.deepEqual(await usedBy(), ["-"]);
      const dry = await vmq(prefix, ["image", "prune", "--dry-run"]);
      assert.match(dry.stdout, /^would remove move-web@sha256:[0-9a-f]{64}$/m);
      await leftOnly(nc, prefix, [back.image]);
      const pruned = await vmq(prefix, ["image", "prune"]);
      assert.equal(pruned.exitCode, 0, pruned.stderr);
      assert.match(pruned.stdout, /^1 removed, 0 kept/m);
      await leftOnly(nc, prefix, []);
    } finally {
      await nc.close();
    }
  });

  it("the CLI SIGKILLed after each step, then run again: exactly one VM running, on hb", async () => {
    const { prefix, nc, client } = await twoHosts();
    try {
      // move-step@N: the CLI dies right after its Nth step is recorded (1: stopped ... 5: started).
      const images: (string | undefined)[] = [];
      for (const n of [1, 2, 3, 4, 5]) {
        const vmId = `cli${n}`;
        await runningOn(client, "ha", vmId);
        const killed = await vmq(prefix, ["move", vmId, "--to", "hb"], {
          VMQ_FAILPOINTS: `move-step@${n}`,
        });
        assert.equal(killed.signal, "SIGKILL", `${vmId}: ${killed.stderr}`);
        // Never two running, whatever step it died at.
        const mid = await statesOf(client, vmId);
        assert.ok(!(mid.ha === "running" && mid.hb === "running"), JSON.stringify(mid));
        const rerun = await vmq(prefix, ["move", vmId, "--to", "hb", "--json"]);
        assert.equal(rerun.exitCode, 0, `${vmId}: ${rerun.stderr}`);
        const done = JSON.parse(rerun.stdout) as MoveRecord;
        assert.equal(done.step, "done");
        images.push(done.image);
        await movedToB(client, vmId);
        // Each step ran once in each hypervisor, whatever was published twice.
        const b = (await calls(prefix, "hb")).filter((l) => l.endsWith(` ${vmId}`));
        assert.deepEqual(b, [`prepare ${vmId}`, `start ${vmId}`]);
        const a = (await calls(prefix, "ha")).filter((l) => l.endsWith(` ${vmId}`));
        assert.deepEqual(a.slice(-3), [`stop ${vmId}`, `export-disk ${vmId}`, `destroy ${vmId}`]);
      }
      await leftOnly(nc, prefix, images);
    } finally {
      await nc.close();
    }
  });

  it("the source's worker SIGKILLed half-way through sending the disk, restarted: the move goes on", async () => {
    const { prefix, nc, client, a } = await twoHosts({
      ha: { VMQ_FAILPOINTS: "mid-disk-export@1" },
    });
    try {
      await runningOn(client, "ha", "src");
      const moving = move(client, "src", { to: "hb", timeoutMs: 120_000 });
      await a.ended();
      assert.deepEqual(a.failpoints, ["mid-disk-export"]);
      const a2 = worker(prefix, "ha");
      await up(a2);
      const rec = await moving;
      assert.equal(rec.step, "done");
      await movedToB(client, "src");
      // The dead run's chunks were swept: only the finished export became the image.
      await leftOnly(nc, prefix, [rec.image]);
    } finally {
      await nc.close();
    }
  });

  // in-backend@N: the worker dies after its Nth backend call's effect, before its outcome is
  // recorded (ha's 1 and 2 are the VM's own prepare and start; 3 stop, 4 export, 5 destroy).
  for (const [host, what, failpoint, op] of [
    ["ha", "inside its stop", "in-backend@3", "stop"],
    ["ha", "once its export was sent", "in-backend@4", "export-disk"],
    ["ha", "inside its destroy", "in-backend@5", "destroy"],
    ["hb", "inside its prepare", "after-intent@1", "prepare"],
    ["hb", "inside its start", "in-backend@2", "start"],
  ] as const) {
    const side = host === "ha" ? "source's" : "target's";
    it(`the ${side} worker SIGKILLed ${what}, restarted: exactly one VM running, on hb`, async () => {
      const { prefix, nc, client, a, b } = await twoHosts({
        [host]: { VMQ_FAILPOINTS: failpoint },
      });
      try {
        await runningOn(client, "ha", "kil");
        const moving = move(client, "kil", { to: "hb", timeoutMs: 120_000 });
        const dying = host === "ha" ? a : b;
        await dying.ended();
        assert.equal(dying.failpoints.length, 1);
        const mid = await statesOf(client, "kil");
        assert.ok(!(mid.ha === "running" && mid.hb === "running"), JSON.stringify(mid));
        if (host === "hb")
          assert.notEqual(mid.ha, "running", "the source stops before the target is touched");
        await up(worker(prefix, host));
        const rec = await moving;
        assert.equal(rec.step, "done");
        await movedToB(client, "kil");
        // A stop, destroy or start whose effect was done is resolved from the backend on the
        // restart, not done again (an export is sent again: its chunks are not state).
        const ran = (await calls(prefix, host)).filter((l) => l === `${op} kil`);
        assert.equal(ran.length, op === "export-disk" ? 2 : 1, `${host}: ${ran.join(", ")}`);
        await leftOnly(nc, prefix, [rec.image]);
      } finally {
        await nc.close();
      }
    });
  }

  /** The code a command's outcome was rejected with (undefined: it was not rejected). */
  const rejectedWith = (out: { outcome: VmEvent }) =>
    out.outcome.type === "vm.command-rejected" ? out.outcome.code : undefined;

  it("after the export, the source refuses a scheduler's start (vm::moving) until the move is over", async () => {
    const { prefix, nc, client, a } = await twoHosts();
    try {
      // A running VM: a start sent to ha while its disk travels would run a second copy.
      await runningOn(client, "ha", "held");
      let during: string | undefined;
      await move(client, "held", {
        to: "hb",
        onProgress: async (r) => {
          if (r.step === "registered")
            during = rejectedWith(await client.start("held", { host: "ha" }));
        },
      });
      assert.equal(during, "vm::moving");
      await movedToB(client, "held");
      const onA = (await calls(prefix, "ha")).filter((l) => l.endsWith(" held"));
      assert.deepEqual(onA, [
        "prepare held",
        "start held",
        "stop held",
        "export-disk held",
        "destroy held",
      ]);

      // A VM never started whose move is left half-way (the CLI gone after the export): held;
      // once the move is aborted (its record final), the scheduler's start runs on ha.
      await client.prepare("left", { ...SPEC, name: "left" }, { host: "ha" });
      const gone = await move(client, "left", {
        to: "hb",
        onProgress: (r) => {
          if (r.step === "registered") throw new Error("the CLI is gone");
        },
      }).catch((e: unknown) => e);
      assert.match(String(gone), /the CLI is gone/);
      assert.equal(rejectedWith(await client.start("left", { host: "ha" })), "vm::moving");
      // The hold is part of the VM: ha's worker drained (a snapshot), then started again.
      await a.stop();
      await up(worker(prefix, "ha"));
      assert.equal(rejectedWith(await client.start("left", { host: "ha" })), "vm::moving");
      const aborted = await vmq(prefix, ["move", "left", "--to", "hb", "--abort", "--json"]);
      assert.equal(aborted.exitCode, 1, aborted.stderr);
      assert.match(aborted.stderr, /move::step-failed|undone/);
      const started = await client.start("left", { host: "ha" });
      assert.equal(started.outcome.type, "vm.started", JSON.stringify(started.outcome));
      assert.deepEqual(await statesOf(client, "left"), { ha: "running", hb: undefined });
    } finally {
      await nc.close();
    }
  });

  it("a step failing before the target runs the VM undoes the move: back on ha, running", async () => {
    const { prefix, nc, client } = await twoHosts();
    try {
      await runningOn(client, "ha", "undo");
      // Someone destroys the target's fresh copy behind the move's back: its start is refused.
      const failingMove = (to: string) =>
        move(client, "undo", {
          to,
          onProgress: async (r) => {
            if (r.step === "prepared") await client.destroy("undo", { host: to });
          },
        }).catch((e: unknown) => e);
      const err = await failingMove("hb");
      assert.ok(isVmqError(err, "move::step-failed"), String(err));
      assert.match(err.message, /undone: start on hb/);
      assert.deepEqual(await statesOf(client, "undo"), { ha: "running", hb: "destroyed" });
      assert.equal((await client.get("undo"))?.host, "ha");
      await leftOnly(nc, prefix, []);
      // The failed record is final: a new move of the VM begins afresh and succeeds.
      const again = await vmq(prefix, ["move", "undo", "--to", "hb", "--json"]);
      assert.equal(again.exitCode, 0, again.stderr);
      await movedToB(client, "undo");
      const image = (JSON.parse(again.stdout) as MoveRecord).image;
      await leftOnly(nc, prefix, [image]);
      // A move back that fails exports the same bytes, so the image hb's copy runs from: undoing
      // it must not remove that image.
      const back = await failingMove("ha");
      assert.ok(isVmqError(back, "move::step-failed"), String(back));
      await movedToB(client, "undo");
      await leftOnly(nc, prefix, [image]);
    } finally {
      await nc.close();
    }
  });
});
