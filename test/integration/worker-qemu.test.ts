import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { NatsConnection } from "@nats-io/transport-node";
import { VmqClient } from "../../src/client/index.js";
import { NatsServer, testPrefix } from "../helpers/nats-server.js";
import { cleanupDataDir, qemuTestGuest, type QemuGuestImages } from "../helpers/qemu-guest.js";
import { skipWhenMissing, type MissingInput } from "../helpers/required.js";
import { WorkerProcess } from "../helpers/worker-process.js";
import { eventually } from "../helpers/worker-harness.js";
import { alive } from "../helpers/pids.js";

describe("worker with the QEMU backend booting a real guest", { timeout: 300_000 }, () => {
  let guest: QemuGuestImages | undefined;
  let missing: MissingInput | undefined;
  let server: NatsServer;
  let nc: NatsConnection;
  let client: VmqClient;
  let dir: string;
  let args: string[];
  let worker: WorkerProcess | undefined;
  /** Ready: a host record from a worker started after `since` (a killed worker's record lingers until its TTL). */
  const ready = async (since = "") =>
    eventually(
      async () =>
        (await client.hosts()).find(
          (x) => x.host === "q1" && x.state === "running" && x.startedAt > since,
        ),
      60_000,
      "worker ready",
    );

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
    dir = await mkdtemp(join(tmpdir(), "vmq-wq-"));
    args = [
      "--nats",
      server.url,
      "--prefix",
      prefix,
      "--host",
      "q1",
      "--backend",
      "qemu",
      "--image-roots",
      g.dir,
      "--data-dir",
      dir,
      "--log-level",
      "warn",
    ];
    worker = new WorkerProcess(args).start();
    await ready();
  });
  after(async () => {
    await worker?.kill();
    if (!guest) return;
    await nc.close();
    await server.stop();
    await cleanupDataDir(join(dir, "qemu"));
    await rm(dir, { recursive: true, force: true });
  });

  it("takes a VM through prepare, start, suspend, resume, stop and destroy from commands on NATS; a worker SIGKILL leaves the guest running and re-adopted", async (t) => {
    if (skipWhenMissing(t, missing) || !guest) return;
    const spec = { name: "q", imagePath: guest.image, vcpus: 1, memoryMb: 128 };
    const run = async (body: Parameters<VmqClient["send"]>[1], type: string, state: string) => {
      const r = await client.send("q1", body);
      assert.equal(r.outcome.type, type, `${body.type}: ${JSON.stringify(r.outcome)}`);
      assert.equal(r.outcome.state, state);
      return r;
    };
    const hosts = await client.hosts();
    assert.ok(
      ["kvm", "tcg"].includes(hosts.find((x) => x.host === "q1")?.accelerator ?? ""),
      "the host record says which accelerator runs guests",
    );
    await run({ type: "vm.prepare", vmId: "qv-1", spec }, "vm.prepared", "prepared");
    const started = await run({ type: "vm.start", vmId: "qv-1" }, "vm.started", "running");
    const pid = started.outcome.type === "vm.started" ? started.outcome.handle?.pid : undefined;
    assert.ok(pid && alive(pid), "a real QEMU process runs the guest");
    await run({ type: "vm.suspend", vmId: "qv-1" }, "vm.suspended", "suspended");
    await run({ type: "vm.resume", vmId: "qv-1" }, "vm.resumed", "running");
    const con = await client.query("q1", "qv-1", "console");
    assert.ok(con.ok && con.console.type === "unix-socket");

    // SIGKILL the worker: the guest keeps running, and the next worker adopts it.
    const before = (await client.history("q1", "qv-1")).length;
    const first = (await client.hosts()).find((x) => x.host === "q1")?.startedAt ?? "";
    await worker?.kill("SIGKILL");
    assert.ok(alive(pid), "the guest outlived its worker");
    worker = new WorkerProcess(args).start();
    await ready(first);
    const state = await client.query("q1", "qv-1", "state");
    assert.ok(
      state.ok && state.state === "running" && state.recorded === "running",
      JSON.stringify(state),
    );
    assert.equal(
      (await client.history("q1", "qv-1")).length,
      before,
      "restart recorded nothing: no drift, no restart",
    );
    assert.ok(alive(pid), "same QEMU process");

    // The serial console, relayed over NATS by the restarted worker: what we type reaches the
    // guest's tty (which echoes it) and what the guest prints comes back.
    const session = await client.openConsole("qv-1", { host: "q1" });
    let out = "";
    const reading = (async () => {
      for await (const chunk of session.output()) out += Buffer.from(chunk).toString("latin1");
    })();
    // Typed again every second until echoed: the first bytes may beat the relay's connection
    // to QEMU's serial socket.
    let typedAt = 0;
    await eventually(
      () => {
        if (out.includes("vmq-console-check")) return true;
        if (Date.now() - typedAt > 1_000) {
          session.write("vmq-console-check\r");
          typedAt = Date.now();
        }
        return undefined;
      },
      60_000,
      "the guest's tty to echo what was typed",
    );

    const stopped = await run(
      { type: "vm.stop", vmId: "qv-1", timeoutMs: 30_000 },
      "vm.stopped",
      "stopped",
    );
    if (stopped.outcome.type === "vm.stopped")
      assert.equal(stopped.outcome.how, "acpi", "the adopted guest answered the power button");
    await eventually(() => (alive(pid) ? undefined : true), 10_000, "QEMU exit");
    await eventually(
      () => (out.includes("VMQ-GUEST-POWEROFF (button)") ? true : undefined),
      10_000,
      "the guest's power-off line on the console",
    );
    session.close();
    await reading;
    await run({ type: "vm.destroy", vmId: "qv-1" }, "vm.destroyed", "destroyed");
  });
});
