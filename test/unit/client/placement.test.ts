import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { choosePlacement, Placer } from "../../../src/client/placement.js";
import type { HostRecord } from "../../../src/contracts/index.js";

const NOW = Date.parse("2026-11-25T10:00:00Z");
const caps = (suspend: boolean) => ({
  suspend,
  reboot: false,
  uefi: true,
  guestIp: true,
  console: "unix-socket" as const,
  observesChanges: true,
});
const host = (name: string, over: Partial<HostRecord> = {}): HostRecord => ({
  host: name,
  version: "0.1.0",
  state: "running",
  backends: ["qemu"],
  defaultBackend: "qemu",
  capabilities: { qemu: caps(true) },
  labels: {},
  startedAt: new Date(NOW - 60_000).toISOString(),
  heartbeatAt: new Date(NOW - 1_000).toISOString(),
  vmCount: 0,
  inFlight: 0,
  ...over,
});

describe("choosePlacement", () => {
  it("picks the host with the fewest VMs, ties by name", () => {
    const hs = [host("b", { vmCount: 3 }), host("a", { vmCount: 3 }), host("c", { vmCount: 5 })];
    assert.deepEqual(choosePlacement(hs, {}, NOW), { host: "a", backend: "qemu" });
  });
  it("never chooses a host that stopped heartbeating, or one that is draining", () => {
    const hs = [
      host("stale", { heartbeatAt: new Date(NOW - 60_000).toISOString() }),
      host("draining", { state: "draining" }),
      host("busy", { vmCount: 99 }),
    ];
    assert.equal(choosePlacement(hs, {}, NOW)?.host, "busy");
    assert.equal(choosePlacement([hs[0] as HostRecord], {}, NOW), undefined);
  });
  it("matches backend, capabilities and labels", () => {
    const hs = [
      host("noop-only", {
        backends: ["noop"],
        defaultBackend: "noop",
        capabilities: { noop: caps(true) },
      }),
      host("propolis", {
        backends: ["propolis"],
        defaultBackend: "propolis",
        capabilities: { propolis: { ...caps(false), console: "websocket" } },
      }),
      host("qemu-b", { labels: { zone: "b" }, vmCount: 1 }),
      host("qemu-a", { labels: { zone: "a" }, vmCount: 7 }),
    ];
    assert.equal(choosePlacement(hs, { backend: "propolis" }, NOW)?.host, "propolis");
    assert.equal(
      choosePlacement(hs, { backend: "propolis", needs: { suspend: true } }, NOW),
      undefined,
    );
    assert.equal(
      choosePlacement(hs, { backend: "qemu", labels: { zone: "a" } }, NOW)?.host,
      "qemu-a",
    );
    assert.equal(choosePlacement(hs, { backend: "qemu" }, NOW)?.host, "qemu-b");
    assert.equal(
      choosePlacement(hs, { backend: "qemu", exclude: ["qemu-b"] }, NOW)?.host,
      "qemu-a",
    );
  });
  it("least-busy looks at in-flight commands instead", () => {
    const hs = [host("a", { vmCount: 1, inFlight: 9 }), host("b", { vmCount: 9, inFlight: 0 })];
    assert.equal(choosePlacement(hs, { strategy: "least-busy" }, NOW)?.host, "b");
  });
});

describe("Placer", () => {
  it("spreads a burst of placements although host records only change on heartbeats", async () => {
    const records = [host("a"), host("b"), host("c")].map((h) => ({
      ...h,
      heartbeatAt: new Date().toISOString(),
    }));
    const placer = new Placer(async () => Promise.resolve(records), 60_000);
    const counts: Record<string, number> = {};
    for (let i = 0; i < 30; i++) {
      const p = await placer.place();
      assert.ok(p);
      counts[p.host] = (counts[p.host] ?? 0) + 1;
    }
    assert.deepEqual(counts, { a: 10, b: 10, c: 10 });
  });
});
