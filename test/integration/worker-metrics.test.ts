import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Worker } from "../../src/worker/worker.js";
import { Harness, SPEC, eventually } from "../helpers/worker-harness.js";

describe("metrics and health over HTTP (--http)", { timeout: 60_000 }, () => {
  let h: Harness;
  let worker: Worker;
  const get = async (path: string) => {
    const r = await fetch(`http://127.0.0.1:${worker.httpPort}${path}`);
    return { status: r.status, text: await r.text() };
  };
  before(async () => {
    h = await Harness.start();
    ({ worker } = await h.worker({ host: "m1", http: "127.0.0.1:0" }));
  });
  after(async () => h.stop());

  it("serves /healthz and /readyz once replayed, reconciled and connected", async () => {
    assert.equal((await get("/healthz")).status, 200);
    const ready = await get("/readyz");
    assert.equal(ready.status, 200);
    assert.deepEqual(JSON.parse(ready.text), { status: "ready" });
  });

  it("exports Prometheus metrics: commands by type and outcome, durations, VMs by state, NATS, replay", async () => {
    await h.client.send("m1", { type: "vm.prepare", vmId: "m-1", spec: SPEC });
    await h.client.send("m1", { type: "vm.suspend", vmId: "m-1" }); // rejected
    const m = await eventually(async () => {
      const t = (await get("/metrics")).text;
      return t.includes('vmq_vms{state="prepared"} 1') ? t : undefined;
    });
    assert.match(m, /vmq_commands_total\{type="vm.prepare",outcome="succeeded"\} 1/);
    assert.match(m, /vmq_commands_total\{type="vm.suspend",outcome="rejected"\} 1/);
    assert.match(m, /vmq_command_duration_seconds_count\{type="vm.prepare"\} 1/);
    assert.match(m, /vmq_nats_connected 1/);
    assert.match(m, /vmq_worker_state\{state="running"\} 1/);
    assert.match(m, /vmq_replay_duration_seconds \d/);
    // Each step of the start, by name: where a slow start went.
    for (const step of ["NATS", "provisioning", "host state", "reconciler", "command consumer"])
      assert.match(m, new RegExp(`vmq_start_step_seconds\\{step="${step}"\\} \\d`));
    assert.match(m, /vmq_dead_lettered_total 0/);
    assert.match(m, /vmq_process_resident_memory_bytes \d+/);
    // A bad command with a made-up type is counted as invalid: a client's strings are no labels.
    h.nc.publish(`${h.prefix}.cmd.m1.m-1`, JSON.stringify({ type: "vm.whatever|x", vmId: "m-1" }));
    const bad = await eventually(async () => {
      const t = (await get("/metrics")).text;
      return t.includes("vmq_dead_lettered_total 1") ? t : undefined;
    });
    assert.match(bad, /vmq_commands_total\{type="invalid",outcome="rejected"\} 1/);
    assert.doesNotMatch(bad, /whatever/);
  });

  it("says not ready (degraded) while NATS is away, and ready again after", async () => {
    await h.server.kill("SIGKILL");
    const down = await eventually(
      async () => {
        const r = await get("/readyz");
        return r.status === 503 ? r : undefined;
      },
      10_000,
      "readyz 503",
    );
    assert.match(down.text, /NATS is away/);
    assert.equal((await get("/healthz")).status, 200, "still alive: nothing to restart");
    assert.match((await get("/metrics")).text, /vmq_nats_connected 0/);
    await h.server.restart();
    await eventually(
      async () => ((await get("/readyz")).status === 200 ? true : undefined),
      20_000,
      "ready again",
    );
  });
});
