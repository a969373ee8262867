import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { FaultyBackend, HypervisorRouter, NoopBackend } from "../../../src/hypervisor/index.js";
import { expectCode } from "../../conformance/hypervisor.conformance.js";

const spec = {
  name: "w",
  imagePath: "/i",
  vcpus: 1,
  memoryMb: 256,
  network: { type: "user" as const },
  uefi: false,
};

/** Noop backends (posing as other tags), their calls logged, to see where the router sends calls. */
const TaggedNoop = () => new FaultyBackend(new NoopBackend());
const FakeQemu = () => new FaultyBackend(new NoopBackend({ tag: "qemu", suspend: false }));

describe("HypervisorRouter", () => {
  it("sends prepare to spec.backend, or to the default", async () => {
    const noop = TaggedNoop();
    const qemu = FakeQemu();
    const r = new HypervisorRouter([noop, qemu], "qemu");
    await r.prepare("a", spec);
    assert.deepEqual(
      qemu.calls.map((c) => c.op),
      ["prepare"],
    );
    await r.prepare("b", { ...spec, backend: "noop" });
    assert.deepEqual(
      noop.calls.map((c) => c.op),
      ["prepare"],
    );
  });

  it("opens the console of the handle's backend, which may refuse it", async () => {
    const r = new HypervisorRouter([TaggedNoop()]);
    const h = await r.prepare("c", spec);
    await expectCode(
      r.openConsole(h, { onData: () => undefined, onClose: () => undefined }),
      "console::unavailable",
    );
  });

  it("dispatches every other call on the handle's tag", async () => {
    const noop = TaggedNoop();
    const r = new HypervisorRouter([noop]);
    const h = await r.prepare("a", spec);
    await r.start(h);
    assert.equal(await r.state(h), "running");
    assert.deepEqual(
      noop.calls.map((c) => c.op),
      ["prepare", "start", "state"],
    );
  });

  it("a tag with no configured backend gives hypervisor::backend-unavailable", async () => {
    const r = new HypervisorRouter([new NoopBackend()]);
    await expectCode(
      r.prepare("a", { ...spec, backend: "propolis" }),
      "hypervisor::backend-unavailable",
    );
    const h = {
      id: "a",
      name: "a",
      backend: "qemu" as const,
      workDir: "/x",
      vcpus: 1,
      memoryMb: 1,
      network: { type: "user" as const },
      uefi: false,
    };
    assert.throws(() => r.consoleEndpoint(h), /not configured/);
    await assert.rejects(
      async () => r.state(h),
      (e: Error & { code?: string }) => e.code === "hypervisor::backend-unavailable",
    );
  });

  it("refuses suspend on a backend without the capability before touching it", async () => {
    const q = FakeQemu();
    const r = new HypervisorRouter([q]);
    const h = await r.prepare("a", spec);
    await assert.rejects(
      async () => r.suspend(h),
      (e: Error & { code?: string }) => e.code === "hypervisor::unsupported",
    );
    assert.deepEqual(
      q.calls.map((c) => c.op),
      ["prepare"],
    );
  });

  it("refuses a default backend that is not configured", () => {
    assert.throws(() => new HypervisorRouter([new NoopBackend()], "qemu"), /not configured/);
  });
});
