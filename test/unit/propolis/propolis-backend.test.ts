import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { VmSpec } from "../../../src/contracts/index.js";
import { mapInstanceState } from "../../../src/hypervisor/backends/propolis/index.js";
import { pickGuestIp, zonecfgScript } from "../../../src/hypervisor/backends/propolis/illumos.js";
import { InstanceState } from "../../../src/hypervisor/backends/propolis/propolis-api.js";
import { isVmqError } from "../../../src/lib/errors.js";
import {
  makePropolisFixture,
  type PropolisFixture,
} from "../../helpers/fake-propolis/propolis-fixture.js";

const spec: VmSpec = {
  name: "be",
  imagePath: "rpool/images/base@latest",
  vcpus: 2,
  memoryMb: 512,
  network: { type: "none" },
  uefi: false,
};
const stopOpts = { timeoutMs: 2_000, force: "after-timeout" as const };

describe("Propolis state mapping and parsing", () => {
  it("maps every InstanceState explicitly", () => {
    const want: Record<InstanceState, string> = {
      Creating: "prepared",
      Starting: "prepared",
      Running: "running",
      Rebooting: "running",
      Stopping: "running",
      Stopped: "stopped",
      Destroyed: "stopped",
      Failed: "failed",
      Repairing: "failed",
      Migrating: "unknown",
    };
    for (const s of InstanceState.options) assert.equal(mapInstanceState(s), want[s], s);
    assert.equal(mapInstanceState("Weird" as InstanceState), "unknown");
  });

  it("picks a usable guest address from ipadm output", () => {
    assert.equal(pickGuestIp("127.0.0.1/8\n::1/128\nfe80::1/10\n10.1.2.3/24\n"), "10.1.2.3");
    assert.equal(pickGuestIp("::1/128\n2001\\:db8\\:\\:5/64\n"), "2001:db8::5");
    assert.equal(pickGuestIp("127.0.0.1/8\n?\n\n"), undefined);
  });

  it("refuses zonecfg values that could inject commands", () => {
    assert.throws(
      () =>
        zonecfgScript({
          brand: "b",
          zonepath: "/zones/a\ncommit",
          devices: [],
          mounts: [],
          attrs: {},
        }),
      (e: unknown) => isVmqError(e, "hypervisor::invalid-path"),
    );
  });
});

describe("PropolisBackend lifecycle details", { concurrency: true }, () => {
  let fx: PropolisFixture;
  before(async () => {
    fx = await makePropolisFixture();
  });
  after(async () => {
    await fx.cleanup();
  });

  it("gives every VM its own server address and a websocket console there", async () => {
    const a = await fx.backend.prepare("be-a", spec);
    const b = await fx.backend.prepare("be-b", spec);
    assert.notEqual(a.propolisAddr, b.propolisAddr);
    assert.deepEqual(fx.backend.consoleEndpoint(a), {
      type: "websocket",
      url: `ws://${a.propolisAddr ?? ""}/instance/serial`,
    });
    assert.equal(fx.backend.capabilities().suspend, false);
    await assert.rejects(fx.backend.resume(a), (e: unknown) =>
      isVmqError(e, "hypervisor::unsupported"),
    );
    await fx.backend.destroy(a, stopOpts);
    await fx.backend.destroy(b, stopOpts);
  });

  it("re-ensures after a stop (generation restarts) and sends Run exactly once per start", async () => {
    const h = await fx.backend.start(await fx.backend.prepare("be-re", spec));
    const fake = fx.fakes.get("be-re");
    assert.ok(fake);
    const r = await fx.backend.stop(h, stopOpts);
    assert.equal(r.how, "sigterm");
    await fx.backend.start(r.handle);
    const ensures = fake.requests.filter((q) => q.method === "PUT" && q.path === "/instance");
    assert.equal(ensures.length, 2);
    assert.deepEqual(fake.stateRequests, ["Run", "Stop", "Run"]);
    assert.equal(fake.state, "Running");
    assert.ok(fake.gen <= 3, `a fresh generation sequence (gen ${fake.gen})`);
    assert.equal(await fx.backend.guestIp(h), "10.0.0.5");
    await fx.backend.destroy(h, stopOpts);
    assert.equal(fake.alive, false, "the zone halt killed the server");
  });

  it("reports a failed start, and halts the zone it booted", async () => {
    fx.onFake.set("be-fail", (f) => f.failNextStart());
    const h = await fx.backend.prepare("be-fail", spec);
    await assert.rejects(fx.backend.start(h), (e: unknown) =>
      isVmqError(e, "propolis::start-failed"),
    );
    assert.equal((await fx.illumos.zone("vmq-be-fail"))?.state, "installed");
    assert.equal(await fx.backend.state(h), "prepared");
    await fx.backend.start(h); // the fault was one-shot
    assert.equal(await fx.backend.state(h), "running");
    await fx.backend.destroy(h, stopOpts);
  });

  it("escalates a wedged stop by zone halt, and a later start boots a fresh server", async () => {
    fx.onFake.set("be-wedge", (f) => f.wedgeIn("Stopping"));
    const h = await fx.backend.start(await fx.backend.prepare("be-wedge", spec));
    const fake = fx.fakes.get("be-wedge");
    assert.ok(fake);
    const r = await fx.backend.stop(h, { timeoutMs: 200, force: "after-timeout" });
    assert.equal(r.how, "sigkill");
    assert.equal(await fx.backend.state(h), "stopped");
    fake.wedgeIn(undefined);
    await fx.backend.start(h);
    assert.equal(fake.boots, 2);
    assert.equal(await fx.backend.state(h), "running");
    await fx.backend.destroy(h, stopOpts);
    assert.equal(await fx.backend.state(h), "destroyed");
  });

  it("answers unknown, not stopped, when the zone runs but its server does not answer", async () => {
    const h = await fx.backend.start(await fx.backend.prepare("be-crash", spec));
    fx.fakes.get("be-crash")?.crash();
    assert.equal(await fx.backend.state(h), "unknown");
    await assert.rejects(fx.backend.stop(h, { timeoutMs: 100, force: "never" }), (e: unknown) =>
      isVmqError(e, "propolis::unreachable"),
    );
    const r = await fx.backend.stop(h, { timeoutMs: 100, force: "after-timeout" });
    assert.equal(r.how, "sigkill");
    assert.equal(await fx.backend.state(h), "stopped");
    await fx.backend.destroy(h, stopOpts);
  });

  it("refuses to start a VM whose zone is gone", async () => {
    const h = await fx.backend.prepare("be-gone", spec);
    await fx.backend.destroy(h, stopOpts);
    await assert.rejects(fx.backend.start(h), (e: unknown) =>
      isVmqError(e, "hypervisor::not-found"),
    );
  });
});
