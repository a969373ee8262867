/**
 * Configuration in sections: the worker's, NATS's, and one per backend, whose schema sits beside
 * the backend with the backend's own defaults; every option a user may set is a flag.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { flagSpecs } from "../../../src/cli/config-flags.js";
import { resolveConfig } from "../../../src/config/config.js";
import { flatKey } from "../../../src/config/sections.js";
import { PROPOLIS_DEFAULTS } from "../../../src/hypervisor/backends/propolis/propolis-options.js";
import { QEMU_DEFAULTS } from "../../../src/hypervisor/backends/qemu/qemu-options.js";

describe("worker configuration in sections", () => {
  it("resolves flat flags into the worker's options, the connection, and one section per backend", () => {
    const c = resolveConfig({
      host: "h1",
      nats: "nats://n:4222",
      token: "t",
      noopLatencyMs: 5,
      qemuKillGraceMs: 1_500,
      accelerator: "tcg",
      propolisServerPort: 13000,
      propolisAddressRange: "10.1.0.10-10.1.0.99",
      propolisZoneBrand: "omicron1",
    });
    assert.equal(c.host, "h1");
    assert.deepEqual(c.connection, { nats: "nats://n:4222", token: "t", embeddedPort: 4222 });
    assert.equal(c.noop.latencyMs, 5);
    assert.equal(c.qemu.killGraceMs, 1_500);
    assert.equal(c.qemu.accelerator, "tcg");
    assert.equal(c.propolis.serverPort, 13_000);
    assert.equal(c.propolis.addressRange, "10.1.0.10-10.1.0.99");
    assert.equal(c.propolis.zoneBrand, "omicron1");
  });

  it("takes each backend's defaults from the backend's own table", () => {
    const c = resolveConfig({ host: "h1" });
    for (const [k, v] of Object.entries(QEMU_DEFAULTS)) {
      const got = (c.qemu as Record<string, unknown>)[k];
      // vnc is on/off on the command line, a boolean in the backend.
      assert.deepEqual(k === "vnc" ? got === "on" : got, v, `qemu.${k}`);
    }
    for (const [k, v] of Object.entries(PROPOLIS_DEFAULTS)) {
      if (k === "orderlyStopHow") continue; // not an operator's choice: see propolis-backend.ts
      if (k === "workRoot") continue; // the worker's default is <data-dir>/propolis
      assert.equal((c.propolis as Record<string, unknown>)[k], v, `propolis.${k}`);
    }
    assert.equal(c.noop.latencyMs, 0);
    assert.equal(c.noop.stateDir, undefined);
  });

  it("makes every operator-facing backend option a flag and an environment variable", () => {
    const flags = new Map(flagSpecs().map((f) => [f.key as string, f]));
    const reachable = (prefix: string, keys: string[], keep: string[] = []) =>
      keys.filter((k) => !flags.has(flatKey(prefix, k, keep)));
    const qemuKeep = ["imageRoots", "accelerator", "cpuModel", "vnc"];
    assert.deepEqual(
      reachable("qemu", [...Object.keys(QEMU_DEFAULTS), "imageRoots", "cpuModel"], qemuKeep),
      [],
    );
    const propolis = Object.keys(PROPOLIS_DEFAULTS).filter((k) => k !== "orderlyStopHow");
    assert.deepEqual(reachable("propolis", [...propolis, "workRoot", "bootromPath", "binDir"]), []);
    assert.equal(flags.get("qemuKillGraceMs")?.flag, "qemu-kill-grace-ms");
    assert.equal(flags.get("qemuKillGraceMs")?.env, "VMQ_QEMU_KILL_GRACE_MS");
    assert.equal(flags.get("qemuBinary")?.flag, "qemu-binary", "no qemu-qemu-");
    assert.equal(flags.get("accelerator")?.flag, "accelerator", "an older name kept");
  });

  it("refuses unsafe names and paths with a clear message", () => {
    assert.throws(
      () => resolveConfig({ host: "h1", propolisZonePrefix: "a;b" }),
      /letters, digits/,
    );
    assert.throws(
      () => resolveConfig({ host: "h1", propolisVmsDataset: "rpool/../x y" }),
      /ZFS dataset/,
    );
    assert.throws(
      () => resolveConfig({ host: "h1", propolisBootromPath: "relative/rom" }),
      /absolute/,
    );
    assert.throws(() => resolveConfig({ host: "h1", cpuModel: "max -device x" }), /-cpu value/);
    assert.throws(() => resolveConfig({ host: "h1", qemuKillGraceMs: 10 }), /100/);
  });
});
