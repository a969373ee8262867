import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import type { CommandType, VmState } from "../../../src/contracts/index.js";
import { isAllowed, targetState } from "../../../src/domain/index.js";
import { NoopBackend } from "../../../src/hypervisor/index.js";
import { isVmqError } from "../../../src/lib/errors.js";
import { expectCode } from "../../conformance/hypervisor.conformance.js";

const handleOf = (id: string) => ({
  id,
  name: id,
  backend: "noop" as const,
  workDir: `noop://${id}`,
  vcpus: 1,
  memoryMb: 256,
  network: { type: "user" as const },
  uefi: false,
});
const spec = { ...handleOf("s"), imagePath: "/images/s.qcow2" };
const stopOpts = { timeoutMs: 1_000, force: "after-timeout" as const };

describe("NoopBackend: the domain's TRANSITIONS, nothing of its own", () => {
  const SEEDABLE: VmState[] = ["prepared", "running", "suspended", "stopped", "failed", "unknown"];
  const CALLS: [CommandType, (b: NoopBackend, id: string) => Promise<unknown>][] = [
    ["vm.start", (b, id) => b.start(handleOf(id))],
    ["vm.stop", (b, id) => b.stop(handleOf(id), stopOpts)],
    ["vm.suspend", (b, id) => b.suspend(handleOf(id))],
    ["vm.resume", (b, id) => b.resume(handleOf(id))],
    ["vm.prepare", (b, id) => b.prepare(id, spec)],
    ["vm.destroy", (b, id) => b.destroy(handleOf(id), stopOpts)],
  ];

  it("allows a call exactly when TRANSITIONS allows its command, and lands on its target", async () => {
    for (const from of SEEDABLE) {
      for (const [type, call] of CALLS) {
        const b = new NoopBackend();
        const id = `${type}-${from}`;
        b.seed(handleOf(id), from);
        const ok = await call(b, id).then(
          () => true,
          (e: unknown) => {
            assert.ok(
              isVmqError(e, "hypervisor::invalid-state"),
              `${type} from ${from}: ${String(e)}`,
            );
            return false;
          },
        );
        assert.equal(ok, isAllowed(type, from), `${type} from ${from}`);
        const now = await b.state(handleOf(id));
        assert.equal(now, ok ? targetState(type) : from, `state after ${type} from ${from}`);
      }
    }
  });

  it("prepares an unknown vmId (TRANSITIONS: from no history) and refuses calls on it otherwise", async () => {
    const b = new NoopBackend();
    assert.equal(await b.state(handleOf("new")), "destroyed");
    await expectCode(b.start(handleOf("new")), "hypervisor::not-found");
    const h = await b.prepare("new", spec);
    assert.equal(b.peek(h.id), "prepared");
  });

  it("refuses suspend and resume as unsupported when configured without them", async () => {
    const b = new NoopBackend({ suspend: false });
    b.seed(handleOf("ns"), "running");
    await expectCode(b.suspend(handleOf("ns")), "hypervisor::unsupported");
    assert.equal(b.capabilities().suspend, false);
  });

  it("forgets a destroyed VM, which still reads as destroyed and can be prepared again", async () => {
    const noop = new NoopBackend();
    const handle = await noop.prepare("d", spec);
    await noop.start(handle, {});
    await noop.destroy(handle, { timeoutMs: 1_000, force: "never" });
    assert.equal(noop.peek("d"), undefined, "nothing is held for a destroyed VM");
    assert.equal(await noop.state(handle), "destroyed");
    assert.equal(await noop.recorded("d"), undefined);
    // A second destroy is harmless, and the vmId can be used again.
    await noop.destroy(handle, { timeoutMs: 1_000, force: "never" });
    const again = await noop.prepare("d", spec);
    assert.equal(noop.peek(again.id), "prepared");
  });

  it("has no console and observes nothing on its own", async () => {
    const b = new NoopBackend();
    const h = await b.prepare("c", spec);
    await expectCode(b.openConsole(h), "console::unavailable");
    assert.deepEqual(b.consoleEndpoint(), { type: "none" });
    assert.equal(b.capabilities().observesChanges, false);
  });

  it("with a state dir, VMs outlive the backend and every effect is in calls.log", async () => {
    const dir = await mkdtemp(join(tmpdir(), "vmq-noop-"));
    try {
      const a = new NoopBackend({ stateDir: dir });
      const h = await a.start(await a.prepare("p", spec));
      await expectCode(a.resume(h), "hypervisor::invalid-state");
      const b = new NoopBackend({ stateDir: dir });
      assert.equal(b.peek("p"), "running", "a new process finds the VM");
      assert.equal((await b.recorded("p"))?.pid, h.pid);
      await b.destroy(h, stopOpts);
      assert.equal(new NoopBackend({ stateDir: dir }).peek("p"), undefined);
      const log = (await readFile(join(dir, "calls.log"), "utf8")).trim().split("\n");
      assert.deepEqual(log, ["prepare p", "start p", "destroy p"], "effects only, in order");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
