/**
 * `vmq evacuate <host>` with a real nats-server and real worker processes (Noop backend, its
 * state in a directory that outlives the worker, as a host's hypervisor state would): hosts A and
 * B, VMs on A, A's worker SIGKILLed. The evacuation is refused while A's lease may still be
 * renewed and succeeds after its TTL; the VMs come up on B (the running ones running); a rerun
 * is a no-op; A's worker restarted on its data dir removes its stale copies and never starts
 * them; a command queued for A meanwhile is rejected vm::evacuated; a host id never seen is
 * refused (host::unknown); a VM that came to A by a move is re-created from that move's export,
 * and says so; one prepared from a tag that moved on since comes back on its own bytes. A second case SIGKILLs the evacuating CLI midway and reruns it: each
 * VM exactly once on B.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, readdir, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { execa } from "execa";
import { Kvm } from "@nats-io/kv";
import { ImageStore, move, VmqClient } from "../../src/client/index.js";
import { HostLease, type Evacuation } from "../../src/contracts/index.js";
import { builtCliPath, runVmq, ROOT } from "../helpers/cli.js";
import { NatsServer, testPrefix } from "../helpers/nats-server.js";
import { WorkerProcess } from "../helpers/worker-process.js";
import { SPEC, eventually } from "../helpers/worker-harness.js";

const TTL_MS = 2_000;

describe(
  "vmq evacuate: a dead host's VMs re-created elsewhere, never run twice",
  { timeout: 300_000 },
  () => {
    let server: NatsServer;
    let dir: string;
    const procs: WorkerProcess[] = [];

    before(async () => {
      server = await NatsServer.start();
      dir = await mkdtemp(join(tmpdir(), "vmq-evac-"));
    });
    after(async () => {
      for (const p of procs) await p.kill().catch(() => undefined);
      await server?.stop();
      await rm(dir, { recursive: true, force: true });
    });

    const worker = (prefix: string, host: string) => {
      const w = new WorkerProcess([
        ...["--nats", server.url, "--prefix", prefix, "--host", host],
        ...[
          "--data-dir",
          join(dir, prefix, host),
          "--noop-state-dir",
          join(dir, prefix, host, "noop"),
        ],
        ...["--noop-latency-ms", "5", "--lease-ttl-ms", String(TTL_MS), "--heartbeat-ms", "500"],
        ...["--log-level", "info"],
      ]).start();
      procs.push(w);
      return w;
    };
    const up = async (w: WorkerProcess) =>
      eventually(() => w.ready || undefined, 60_000, "worker running");
    const vmq = (prefix: string, ...args: string[]) =>
      runVmq([...args, "--nats", server.url, "--prefix", prefix], { timeout: 120_000 });
    const noopCalls = async (prefix: string, host: string) =>
      (await readFile(join(dir, prefix, host, "noop", "calls.log"), "utf8").catch(() => ""))
        .split("\n")
        .filter(Boolean);

    /** A fresh prefix with hosts ha and hb running, and a client on it. */
    const twoHosts = async () => {
      const prefix = testPrefix();
      const nc = await server.connect();
      const client = new VmqClient(nc, { prefix, timeoutMs: 30_000 });
      const a = worker(prefix, "ha");
      const b = worker(prefix, "hb");
      await Promise.all([up(a), up(b)]);
      return { prefix, nc, client, a, b };
    };

    it("refused before the TTL, done after; rerun is a no-op; the dead host coming back does not run them twice", async () => {
      const { prefix, nc, client, a } = await twoHosts();
      try {
        const running = ["r1", "r2"];
        const stopped = ["s1"];
        for (const vmId of [...running, ...stopped]) {
          assert.equal(
            (await client.prepare(vmId, { ...SPEC, name: vmId }, { host: "ha" })).outcome.type,
            "vm.prepared",
          );
          assert.equal((await client.start(vmId, { host: "ha" })).outcome.type, "vm.started");
        }
        assert.equal(
          (await client.stop("s1", { force: "now", host: "ha" })).outcome.type,
          "vm.stopped",
        );
        await eventually(async () => (await client.get("s1"))?.state === "stopped" || undefined);
        // m1 came to ha by a move: it runs from the disk that move exported.
        await client.prepare("m1", { ...SPEC, name: "m1" }, { host: "hb" });
        assert.equal((await client.start("m1", { host: "hb" })).outcome.type, "vm.started");
        const moved = await move(client, "m1", { to: "ha" });
        assert.equal(moved.step, "done");
        // t1 is prepared from the object store's base:v1, a tag that moves on before the
        // evacuation: t1 must come back on the bytes it was prepared from.
        const images = new ImageStore(nc, { prefix });
        const pushed = async (bytes: number) => {
          const file = join(dir, `${prefix}-${bytes}.img`);
          await writeFile(file, randomBytes(bytes));
          return images.push(file, { name: "base", tag: "v1" });
        };
        const first = await pushed(65_536);
        const { imagePath: _p, ...fromStore } = { ...SPEC, name: "t1", image: "base:v1" };
        assert.equal(
          (await client.prepare("t1", fromStore, { host: "ha" })).outcome.type,
          "vm.prepared",
        );

        await a.kill("SIGKILL");
        assert.notEqual((await pushed(131_072)).digest, first.digest, "base:v1 moved on");
        // Queued for the dead host before the evacuation: it must never run.
        const queued = await client.publish("ha", { type: "vm.stop", vmId: "r1", force: "now" });

        // Its lease was renewed less than a TTL ago: refused, with the code.
        const early = await vmq(prefix, "evacuate", "ha", "--wait", "300");
        assert.equal(early.exitCode, 1, early.stderr);
        assert.match(early.stderr, /host::alive/);

        // A host id the fleet never saw (a typo) is refused and nothing is fenced, even when
        // the operator insists it is dead.
        const typo = await vmq(prefix, "evacuate", "hz", "--i-know-it-is-dead");
        assert.equal(typo.exitCode, 1, typo.stderr);
        assert.match(typo.stderr, /host hz is unknown here.*\[host::unknown\]/);
        const leases = await new Kvm(nc).open(client.names.leasesBucket);
        assert.equal(await leases.get("hz"), null, "no lease record written for hz");

        const done = await vmq(prefix, "evacuate", "ha", "--json");
        assert.equal(done.exitCode, 0, done.stderr);
        const ev = JSON.parse(done.stdout) as Evacuation;
        assert.ok(ev.completedAt);
        assert.deepEqual(ev.vms.map((v) => [v.vmId, v.step, v.target]).sort(), [
          ["m1", "done", "hb"],
          ["r1", "done", "hb"],
          ["r2", "done", "hb"],
          ["s1", "done", "hb"],
          ["t1", "done", "hb"],
        ]);
        // What each VM lost: its disk, back to its base image, or to what its last move exported.
        for (const v of ev.vms)
          assert.match(
            v.lost.join(" "),
            v.vmId === "m1"
              ? new RegExp(
                  `disk state: re-created from the disk its last move exported \\(${moved.image}\\)`,
                )
              : /disk state: re-created from its base image/,
          );
        const m1 = await eventually(async () => {
          const v = await client.get("m1");
          return v?.host === "hb" && v.state === "running" ? v : undefined;
        });
        assert.equal(`move-m1@${m1.handle?.imageDigest}`, moved.image, "m1 runs from its export");
        const t1 = await eventually(async () => {
          const v = await client.get("t1");
          return v?.host === "hb" && v.state === "prepared" ? v : undefined;
        });
        assert.equal(t1.handle?.imageDigest, first.digest, "t1 runs from the bytes it had");

        // The target's view records follow its outcomes a moment later (another process's
        // writes: this client's read-your-writes does not cover them), so they are awaited.
        const settled = async (vmId: string, state: string) =>
          eventually(
            async () => {
              const v = await client.get(vmId);
              return v?.host === "hb" && v.state === state ? v : undefined;
            },
            10_000,
            `${vmId} ${state} on hb in the view`,
          );
        for (const vmId of running) await settled(vmId, "running");
        await settled("s1", "prepared");
        const hist = await client.history("hb", "r1");
        const prepared = hist.find((e) => e.event.type === "vm.prepared");
        assert.deepEqual(prepared?.event.type === "vm.prepared" && prepared.event.origin, {
          kind: "evacuation",
          fromHost: "ha",
          evacuationId: ev.id,
        });

        // A rerun finds the evacuation complete: nothing published, no event anywhere.
        const before = (await client.history("hb", "r1")).length;
        const again = await vmq(prefix, "evacuate", "ha", "--json");
        assert.equal(again.exitCode, 0, again.stderr);
        assert.equal((JSON.parse(again.stdout) as Evacuation).id, ev.id);
        assert.equal((await client.history("hb", "r1")).length, before);

        // A comes back on its data dir: it still "has" its VMs (the Noop state survived).
        const callsBefore = (await noopCalls(prefix, "ha")).length;
        const a2 = worker(prefix, "ha");
        await up(a2);
        for (const vmId of [...running, ...stopped]) {
          const h = (await client.history("ha", vmId)).map((e) => e.event);
          const evac = h.find((e) => e.type === "vm.evacuated");
          assert.ok(evac?.type === "vm.evacuated", `${vmId}: ${h.map((e) => e.type).join(",")}`);
          assert.equal(evac.toHost, "hb");
          assert.equal(evac.stale, running.includes(vmId) ? "running" : "stopped");
          assert.ok(
            h.some((e) => e.type === "vm.state-observed" && /evacuated/.test(e.detail ?? "")),
          );
        }
        const after = (await noopCalls(prefix, "ha")).slice(callsBefore);
        assert.ok(!after.some((l) => l.startsWith("start")), after.join("\n"));
        for (const vmId of [...running, ...stopped])
          assert.ok(after.includes(`destroy ${vmId}`), after.join("\n"));
        const left = (await readdir(join(dir, prefix, "ha", "noop"))).filter((f) =>
          f.endsWith(".json"),
        );
        assert.deepEqual(left, []);

        // The queued stop: rejected with the documented code, never run.
        const out = await client.waitForOutcome("ha", "r1", queued.command.commandId, {
          timeoutMs: 30_000,
        });
        assert.equal(out.outcome.type, "vm.command-rejected");
        assert.equal(
          out.outcome.type === "vm.command-rejected" && out.outcome.code,
          "vm::evacuated",
        );

        // Clients still resolve them to B, which still runs them; A took its lease back, clean.
        for (const vmId of running) {
          assert.equal((await client.get(vmId))?.host, "hb");
          assert.equal(
            await client.query("hb", vmId, "state").then((r) => (r as { state?: string }).state),
            "running",
          );
        }
        const kv = await new Kvm(nc).open(`${prefix}-leases`);
        await eventually(async () => {
          const rec = HostLease.parse((await kv.get("ha"))?.json());
          return !rec.holder.startsWith("evacuation:") && rec.evacuation === undefined
            ? rec
            : undefined;
        });
      } finally {
        await nc.close();
      }
    });

    it("the evacuating CLI SIGKILLed midway, then rerun: each VM exactly once on B", async () => {
      const { prefix, nc, client, a } = await twoHosts();
      try {
        const vms = ["v1", "v2", "v3", "v4", "v5", "v6"];
        for (const vmId of vms) {
          await client.prepare(vmId, { ...SPEC, name: vmId }, { host: "ha" });
          await client.start(vmId, { host: "ha" });
        }
        await a.kill("SIGKILL");
        const cli = execa(
          process.execPath,
          [builtCliPath, "evacuate", "ha", "--nats", server.url, "--prefix", prefix],
          {
            reject: false,
            cwd: ROOT,
          },
        );
        let seen = "";
        cli.stderr?.on("data", (d: Buffer) => (seen += d.toString()));
        await eventually(
          () => (/v2: (prepared|done)/.test(seen) ? true : undefined),
          60_000,
          "some VMs moved",
        );
        cli.kill("SIGKILL");
        await cli;
        const rerun = await vmq(prefix, "evacuate", "ha", "--json");
        assert.equal(rerun.exitCode, 0, rerun.stderr);
        const ev = JSON.parse(rerun.stdout) as Evacuation;
        assert.ok(ev.completedAt);
        for (const vmId of vms) {
          const h = (await client.history("hb", vmId)).map((e) => e.event.type);
          assert.equal(h.filter((t) => t === "vm.prepared").length, 1, `${vmId}: ${h.join(",")}`);
          assert.equal(h.filter((t) => t === "vm.started").length, 1, `${vmId}: ${h.join(",")}`);
          assert.equal((await client.get(vmId))?.host, "hb");
        }
        assert.equal((await client.list({ host: "hb" })).length, vms.length);
      } finally {
        await nc.close();
      }
    });
  },
);
