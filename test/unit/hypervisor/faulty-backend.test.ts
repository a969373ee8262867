/**
 * FaultyBackend wraps any Hypervisor: the faults happen in front of the wrapped backend (which
 * a failed call never reaches), and what it wraps stays in charge of the VMs.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { VmHandle } from "../../../src/contracts/index.js";
import {
  FaultyBackend,
  NoopBackend,
  type ChangeListener,
  type Hypervisor,
  type ObservedChange,
} from "../../../src/hypervisor/index.js";
import { isVmqError } from "../../../src/lib/errors.js";
import { expectCode } from "../../conformance/hypervisor.conformance.js";

const spec = {
  name: "f",
  imagePath: "/i",
  vcpus: 1,
  memoryMb: 256,
  network: { type: "user" as const },
  uefi: false,
};
const wrapped = (opts = {}) => new FaultyBackend(new NoopBackend(), opts);
const running = async (b: FaultyBackend<NoopBackend>, id: string) =>
  b.start(await b.prepare(id, spec));

/** A backend that is not the Noop: it reports every call it gets, and one change on demand. */
class Recorder extends NoopBackend implements Hypervisor {
  readonly got: string[] = [];
  readonly #listeners = new Set<ChangeListener>();
  override async start(vm: VmHandle): Promise<VmHandle> {
    this.got.push(`start ${vm.id}`);
    return super.start(vm);
  }
  watch(l: ChangeListener): () => void {
    this.#listeners.add(l);
    return () => this.#listeners.delete(l);
  }
  report(c: ObservedChange): void {
    for (const l of this.#listeners) l(c);
  }
}

describe("FaultyBackend around a backend", () => {
  it("passes calls through, takes the wrapped tag, and adds observed changes to its capabilities", async () => {
    const inner = new Recorder({ tag: "qemu", suspend: false });
    const b = new FaultyBackend(inner);
    assert.equal(b.tag, "qemu");
    assert.equal(b.capabilities().suspend, false);
    assert.equal(b.capabilities().observesChanges, true, "it can report vanished VMs");
    const h = await b.start(await b.prepare("p", spec));
    assert.deepEqual(inner.got, ["start p"]);
    assert.equal(await b.state(h), "running");
    assert.equal((await b.recorded("p"))?.id, "p");
    await expectCode(
      b.openConsole(h, { onData: () => undefined, onClose: () => undefined }),
      "console::unavailable",
    );
  });

  it("keeps every call below the bound, and beyond it drops only the oldest", async () => {
    const N = 5;
    const b = wrapped({ keepCalls: N });
    // One VM per call, so each call can be told apart (and its order seen).
    const made: { op: string; vmId: string }[] = [];
    for (let k = 1; k <= 6 * N; k++) {
      const handle = await b.inner.prepare(`v${k}`, spec);
      await b.state(handle);
      made.push({ op: "state", vmId: `v${k}` });
      const kept = b.calls.map((c) => ({ op: c.op, vmId: c.vmId }));
      if (k <= N) {
        assert.deepEqual(kept, made, `with ${k} <= keepCalls calls, all are kept, in order`);
        continue;
      }
      assert.ok(
        kept.length >= N && kept.length <= 2 * N,
        `after ${k} calls it holds between keepCalls and twice that (has ${kept.length})`,
      );
      assert.deepEqual(kept, made.slice(-kept.length), `after ${k} calls: the latest, in order`);
    }
    assert.notDeepEqual(b.calls[0], made[0], "the oldest calls were dropped");
    const all = wrapped();
    await all.state(await all.prepare("a", spec));
    assert.deepEqual(
      all.calls.map((c) => c.op),
      ["prepare", "state"],
    );
  });

  it("fails the next N calls with the given code, before the wrapped backend is reached", async () => {
    const b = wrapped();
    b.failNext(2, "hypervisor::timeout", { ops: ["prepare"] });
    const e = await b.prepare("a", spec).catch((x: unknown) => x);
    assert.ok(isVmqError(e, "hypervisor::timeout") && e.retryable, "retryable, as the table says");
    await expectCode(b.prepare("a", spec), "hypervisor::timeout");
    assert.equal(b.inner.peek("a"), undefined, "the failed calls never reached the backend");
    const h = await b.prepare("a", spec);
    assert.equal(await b.state(h), "prepared", "then it recovers");
    b.failNext(1, undefined, { ops: ["start"], retryable: false });
    const injected = await b.start(h).catch((x: unknown) => x);
    assert.ok(isVmqError(injected, "hypervisor::injected"));
    assert.equal(injected.retryable, false, "a test may override the table");
    assert.equal(b.inner.peek("a"), "prepared");
  });

  it("an unreachable backend fails every call as retryable and touches nothing", async () => {
    const b = wrapped();
    const h = await b.prepare("u", spec);
    b.setUnreachable();
    await assert.rejects(b.start(h), (e: unknown) => {
      assert.ok(isVmqError(e, "hypervisor::unreachable") && e.retryable);
      return true;
    });
    assert.equal(b.inner.peek("u"), "prepared");
    b.setUnreachable(false);
    assert.equal(await b.state(h), "prepared");
  });

  it("adds latency to every call, and a cancelled wait touches nothing", async () => {
    const b = wrapped({ latencyMs: 150 });
    const began = Date.now();
    const h = await b.prepare("l", spec);
    assert.ok(Date.now() - began >= 140, "the call waited its latency");
    await expectCode(b.start(h, { signal: AbortSignal.timeout(20) }), "hypervisor::aborted");
    assert.equal(b.inner.peek("l"), "prepared");
  });

  it("a stubborn guest: force never times out and leaves it running; after-timeout escalates", async () => {
    const b = wrapped();
    const h = await running(b, "s");
    b.hangStop(true, "s");
    await expectCode(b.stop(h, { timeoutMs: 100, force: "never" }), "hypervisor::stop-timeout");
    assert.equal(b.inner.peek("s"), "running");
    const began = Date.now();
    const r = await b.stop(h, { timeoutMs: 150, force: "after-timeout" });
    assert.ok(Date.now() - began >= 140, "waited out the timeout first");
    assert.equal(r.how, "sigterm");
    assert.equal(b.inner.peek("s"), "stopped");
    // Not running: the backend's own refusal, at once.
    await expectCode(b.stop(h, { timeoutMs: 60_000, force: "never" }), "hypervisor::invalid-state");
  });

  it("a vanished VM is stopped in the backend and reported once, from here", async () => {
    const inner = new Recorder();
    const b = new FaultyBackend(inner);
    const seen: ObservedChange[] = [];
    const off = b.watch((c) => seen.push(c));
    const h = await b.start(await b.prepare("v", spec));
    await b.vanish("v", "guest-poweroff");
    assert.equal(await b.state(h), "stopped");
    assert.equal(seen.length, 1);
    assert.equal(seen[0]?.state, "stopped");
    assert.equal(seen[0]?.source, "process");
    assert.equal(seen[0]?.guestInitiated, true);
    assert.equal(seen[0]?.handle?.pid, undefined, "the reported handle has no pid");
    await b.vanish("v"); // already stopped: nothing happens
    await b.vanish("nobody");
    assert.equal(seen.length, 1);
    // The wrapped backend's own observations reach the same watchers.
    inner.report({ vmId: "v", backend: "noop", state: "failed", source: "qmp" });
    assert.deepEqual(
      seen.map((c) => c.state),
      ["stopped", "failed"],
    );
    off();
    inner.report({ vmId: "v", backend: "noop", state: "running", source: "qmp" });
    assert.equal(seen.length, 2, "unsubscribed from both");
  });
});
