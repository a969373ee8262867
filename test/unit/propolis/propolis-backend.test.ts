import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { VmSpec } from "../../../src/contracts/index.js";
import {
  mapInstanceState,
  PropolisBackend,
} from "../../../src/hypervisor/backends/propolis/index.js";
import { zonecfgScript } from "../../../src/hypervisor/backends/propolis/illumos.js";
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

  it("refuses zonecfg values that could inject commands", () => {
    assert.throws(
      () =>
        zonecfgScript({
          brand: "b",
          zonepath: "/zones/a\ncommit",
          nets: [],
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
    assert.equal(
      r.how,
      "forced",
      "Propolis Stop is a hard halt of the VMM, never a guest shutdown",
    );
    await fx.backend.start(r.handle);
    const ensures = fake.requests.filter((q) => q.method === "PUT" && q.path === "/instance");
    assert.equal(ensures.length, 2);
    assert.deepEqual(fake.stateRequests, ["Run", "Stop", "Run"]);
    assert.equal(fake.state, "Running");
    assert.ok(fake.gen <= 3, `a fresh generation sequence (gen ${fake.gen})`);
    await assert.rejects(fx.backend.guestIp(h), (e: unknown) =>
      isVmqError(e, "network::no-address"),
    );
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

  it("guestIp is the guest's, by its VNIC's MAC in the zone's ARP/NDP tables: never the zone's, never another VM's", async () => {
    await fx.illumos.addVnic("gv10", "2:8:20:0:0:1");
    await fx.illumos.addVnic("gv20", "02:08:20:00:00:02");
    const one = await fx.backend.start(
      await fx.backend.prepare("be-ip1", { ...spec, network: { type: "vnic", name: "gv10" } }),
    );
    const two = await fx.backend.start(
      await fx.backend.prepare("be-ip2", { ...spec, network: { type: "vnic", name: "gv20" } }),
    );
    // Nothing learnt yet: no address, rather than the zone's own.
    await assert.rejects(fx.backend.guestIp(one), (e: unknown) =>
      isVmqError(e, "network::no-address"),
    );
    const ctl = (h: typeof one) => h.propolisAddr?.split(":")[0] ?? "";
    for (const [zone, h] of [
      ["vmq-be-ip1", one],
      ["vmq-be-ip2", two],
    ] as const) {
      await fx.illumos.setNeighbours(zone, {
        arp: [
          "Net to Media Table: IPv4",
          "Device   IP Address               Mask      Flags      Phys Addr",
          "------ -------------------- --------------- -------- ---------------",
          `vmqc0  ${ctl(h)}          255.255.255.255 SPLA     2:8:20:0:0:1`,
          "vmqc0  10.9.0.5             255.255.255.255          2:8:20:0:0:1",
          "vmqc0  10.9.0.9             255.255.255.255          2:8:20:0:0:99",
        ].join("\n"),
        ndp: [
          "vmqc0 2:8:20:0:0:1 dynamic REACHABLE fe80::8:20ff:fe00:1",
          "vmqc0 2:8:20:0:0:2 dynamic REACHABLE 2001:db8::7",
          "vmqc0 2:8:20:0:0:2 local REACHABLE 2001:db8::1",
        ].join("\n"),
      });
    }
    assert.equal(await fx.backend.guestIp(one), "10.9.0.5");
    assert.equal(await fx.backend.guestIp(two), "2001:db8::7", "its own MAC, not VM one's IPv4");
    const zlogins = (await fx.illumos.calls()).filter((c) => c[0] === "zlogin");
    assert.ok(
      zlogins.every((c) => ["arp", "ndp"].includes(c[2] ?? "")),
      "read in the zone",
    );
    await fx.backend.destroy(one, stopOpts);
    await fx.backend.destroy(two, stopOpts);
  });

  it("refuses to prepare without an address range or a bootrom, with a code that says what to set", async () => {
    const bare = new PropolisBackend({
      runnerOptions: fx.illumos.runnerOptions,
      workRoot: fx.illumos.workRoot,
      bootromPath: fx.illumos.bootromPath,
    });
    await assert.rejects(bare.prepare("be-bare", spec), (e: unknown) =>
      isVmqError(e, "propolis::not-configured"),
    );
    const noRom = new PropolisBackend({
      runnerOptions: fx.illumos.runnerOptions,
      workRoot: fx.illumos.workRoot,
      addressRange: "10.0.0.1-10.0.0.2",
      controlLink: "stub0",
      bootromPath: "/nonexistent/OVMF_CODE.fd",
    });
    await assert.rejects(noRom.prepare("be-norom", spec), (e: unknown) =>
      isVmqError(e, "propolis::not-configured"),
    );
    assert.throws(
      () => new PropolisBackend({ addressRange: "10.0.0.1-10.0.0.2" }),
      (e: unknown) => isVmqError(e, "propolis::not-configured"),
    );
    assert.equal(await fx.illumos.zone("vmq-be-bare"), undefined);
  });

  it("the fake brand refuses to boot a zone whose attributes are not what it reads", async () => {
    const wrong = new PropolisBackend({
      runnerOptions: fx.illumos.runnerOptions,
      workRoot: fx.illumos.workRoot,
      addressRange: "127.0.0.250-127.0.0.250",
      controlLink: "stub0",
      bootromPath: fx.illumos.bootromPath,
      addrAttr: "other-addr",
    });
    const h = await wrong.prepare("be-attr", spec);
    await assert.rejects(wrong.start(h), (e: unknown) => {
      assert.ok(isVmqError(e, "zone::command-failed"), String(e));
      assert.match(e.message, /vmq-propolis-addr is not set/);
      return true;
    });
    await assert.rejects(wrong.prepare("be-attr2", spec), (e: unknown) =>
      isVmqError(e, "propolis::no-free-address"),
    );
    await wrong.destroy(h, stopOpts);
    await wrong.close();
  });
});
