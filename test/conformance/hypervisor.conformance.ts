/**
 * The suite every Hypervisor backend must pass: lifecycle, illegal transitions, idempotent
 * destroy, stop timeout honoured, state after every call, and observed changes that are only
 * what happened behind the backend's back. Each backend's *.test.ts calls
 * hypervisorConformance() with a fixture.
 */
import assert from "node:assert/strict";
import { describe, it, before, after } from "node:test";
import { setTimeout as delay } from "node:timers/promises";
import type {
  ObservationSource,
  StopHow,
  VmHandle,
  VmSpec,
  VmState,
} from "../../src/contracts/index.js";
import type { Hypervisor, ObservedChange } from "../../src/hypervisor/index.js";
import { isVmqError } from "../../src/lib/errors.js";
import { skipWhenMissing, type MissingInput } from "../helpers/required.js";

export interface ConformanceFixture {
  backend: Hypervisor;
  /** A spec that boots a guest that answers ACPI power-off. */
  spec: VmSpec;
  /**
   * A guest that ignores the power button, to exercise the stop timeout and escalation.
   * `how` is the step the escalation must record (exactly: a backend that skips a step fails).
   */
  stubborn?: { spec: VmSpec; setup?: (vmId: string) => void; how: StopHow };
  /**
   * A VM whose hypervisor process itself is wedged once it runs (QEMU frozen with SIGSTOP acts
   * on neither the power button nor SIGTERM), to exercise the escalation's last step. `how` is
   * the step stop must record; `backend` (default: the fixture's) may have short grace periods.
   */
  wedged?: {
    backend?: Hypervisor;
    spec: VmSpec;
    /** Wedges the VM `start` returned. */
    wedge: (running: VmHandle) => Promise<void>;
    how: StopHow;
  };
  /**
   * What the backend left running of a VM after an escalated stop (a process, a zone), given
   * the handle `start` returned; undefined when nothing is left. Checked when provided.
   */
  leftover?: (running: VmHandle) => Promise<string | undefined>;
  /** Fresh vmIds per test (backends may share state). */
  vmId: (name: string) => string;
  cleanup?: () => Promise<void>;
  /** What a graceful stop that succeeds records (default acpi; Propolis has no ACPI stop). */
  gracefulHow?: StopHow;
  /** How long a boot may take (TCG is slow); default 60 s. */
  bootTimeoutMs?: number;
  /**
   * A way to change a running VM behind the backend's back (kill its process, power it off
   * from the guest, change it in a fake server), and what `watch` must then report.
   */
  outside?: {
    change: (vm: VmHandle) => Promise<void> | void;
    expect: { state: VmState; source: ObservationSource; guestInitiated: boolean };
  };
}

export async function expectCode(p: Promise<unknown>, codes: string | string[]): Promise<void> {
  const want = Array.isArray(codes) ? codes : [codes];
  await assert.rejects(p, (e: unknown) => {
    assert.ok(isVmqError(e), `expected a VmqError, got ${String(e)}`);
    assert.ok(want.includes(e.code), `expected ${want.join(" or ")}, got ${e.code}: ${e.message}`);
    return true;
  });
}

const stopOpts = (timeoutMs = 20_000) => ({ timeoutMs, force: "after-timeout" as const });

/** Long enough for a late effect of our own calls to show (Propolis's halt runs on). */
const SETTLE_MS = 300;

async function first<T>(what: string, f: () => T | undefined, ms = 30_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await delay(25);
  }
}

export function hypervisorConformance(
  name: string,
  /** The fixture, or what it needs and did not find (each case then fails in CI, else skips). */
  make: () => Promise<ConformanceFixture | { missing: MissingInput }>,
): void {
  describe(`Hypervisor conformance: ${name}`, { concurrency: true }, () => {
    let fx: ConformanceFixture | undefined;
    let missing: MissingInput | undefined;
    before(async () => {
      const made = await make();
      if ("missing" in made) missing = made.missing;
      else fx = made;
    });
    after(async () => {
      await fx?.cleanup?.();
    });
    const get = (t: { skip: (msg: string) => void }): ConformanceFixture | undefined => {
      skipWhenMissing(t, missing);
      return fx;
    };

    it("walks the full lifecycle and reports the true state after every call", async (t) => {
      const f = get(t);
      if (!f) return;
      const b = f.backend;
      const id = f.vmId("life");
      const h = await b.prepare(id, f.spec);
      assert.equal(h.id, id);
      assert.equal(h.backend, b.tag);
      assert.equal(await b.state(h), "prepared");
      if (b.recorded) {
        // What a restarted worker reads back for a prepare whose outcome it never wrote.
        const rec = await b.recorded(id);
        assert.equal(rec?.id, id, "the backend recorded the prepared VM's handle");
        assert.equal(rec?.backend, b.tag);
      }
      const running = await b.start(h);
      assert.equal(await b.state(running), "running");
      let current = running;
      if (b.capabilities().suspend) {
        current = await b.suspend(current);
        assert.equal(await b.state(current), "suspended");
        current = await b.resume(current);
        assert.equal(await b.state(current), "running");
      }
      // The guest may still be booting (TCG on a busy machine is slow): a graceful stop can
      // take as long as a boot, and returns as soon as the guest is off.
      const stopped = await b.stop(current, stopOpts(f.bootTimeoutMs ?? 60_000));
      assert.equal(stopped.how, f.gracefulHow ?? "acpi", "a graceful stop records its first step");
      assert.equal(await b.state(stopped.handle), "stopped");
      const again = await b.start(stopped.handle);
      assert.equal(await b.state(again), "running");
      await b.destroy(again, stopOpts(5_000));
      assert.equal(await b.state(again), "destroyed");
      if (b.recorded) assert.equal(await b.recorded(id), undefined, "no record once destroyed");
    });

    it("refuses illegal transitions with a coded error and leaves the state alone", async (t) => {
      const f = get(t);
      if (!f) return;
      const b = f.backend;
      const h = await b.prepare(f.vmId("illegal"), f.spec);
      if (b.capabilities().suspend) {
        await expectCode(b.suspend(h), "hypervisor::invalid-state");
        await expectCode(b.resume(h), "hypervisor::invalid-state");
      }
      await expectCode(b.stop(h, stopOpts()), "hypervisor::invalid-state");
      assert.equal(await b.state(h), "prepared");
      const r = await b.start(h);
      await expectCode(b.start(r), "hypervisor::invalid-state");
      assert.equal(await b.state(r), "running");
      await b.destroy(r, stopOpts(5_000));
    });

    it("reports suspend as unsupported when it is not a capability", async (t) => {
      const f = get(t);
      if (!f) return;
      const b = f.backend;
      if (b.capabilities().suspend) {
        t.skip(`${name} supports suspend; nothing to check here`);
        return;
      }
      const h = await b.prepare(f.vmId("nosusp"), f.spec);
      await expectCode(b.suspend(h), "hypervisor::unsupported");
      assert.equal(await b.state(h), "prepared");
      await b.destroy(h, stopOpts(5_000));
    });

    it("destroys idempotently, from prepared and again when gone", async (t) => {
      const f = get(t);
      if (!f) return;
      const b = f.backend;
      const h = await b.prepare(f.vmId("destroy"), f.spec);
      await b.destroy(h, stopOpts(5_000));
      assert.equal(await b.state(h), "destroyed");
      await b.destroy(h, stopOpts(5_000));
      assert.equal(await b.state(h), "destroyed");
    });

    it("honours the stop timeout: a guest that ignores power-off is escalated and the step recorded", async (t) => {
      const f = get(t);
      if (!f) return;
      if (!f.stubborn) {
        t.skip(`${name} has no stubborn guest fixture`);
        return;
      }
      const b = f.backend;
      const id = f.vmId("stubborn");
      f.stubborn.setup?.(id);
      {
        const h = await b.start(await b.prepare(id, f.stubborn.spec));
        await expectCode(b.stop(h, { timeoutMs: 300, force: "never" }), "hypervisor::stop-timeout");
        assert.equal(await b.state(h), "running", "force: never leaves a stubborn guest running");
        const began = Date.now();
        const r = await b.stop(h, { timeoutMs: 500, force: "after-timeout" });
        assert.ok(Date.now() - began >= 450, "stop waited for its timeout before escalating");
        assert.equal(r.how, f.stubborn.how, "the escalation recorded the step that stopped it");
        assert.equal(await b.state(r.handle), "stopped");
        assert.equal(await f.leftover?.(h), undefined, "nothing of the VM is left running");
        await b.destroy(r.handle, stopOpts(5_000));
      }
    });

    it("escalates to the last step when the hypervisor process itself ignores the orderly stop", async (t) => {
      const f = get(t);
      if (!f) return;
      if (!f.wedged) {
        t.skip(`${name} has no wedged-VM fixture (a VM whose process ignores SIGTERM too)`);
        return;
      }
      const b = f.wedged.backend ?? f.backend;
      const h = await b.start(await b.prepare(f.vmId("wedged"), f.wedged.spec));
      await f.wedged.wedge(h);
      const began = Date.now();
      const r = await b.stop(h, { timeoutMs: 500, force: "after-timeout" });
      assert.ok(Date.now() - began >= 450, "stop waited for its timeout before escalating");
      assert.equal(r.how, f.wedged.how, "the escalation recorded the step that stopped it");
      assert.equal(await b.state(r.handle), "stopped");
      assert.equal(await f.leftover?.(h), undefined, "nothing of the VM is left running");
      await b.destroy(r.handle, stopOpts(5_000));
    });

    it("stops at once with force: now", async (t) => {
      const f = get(t);
      if (!f) return;
      const b = f.backend;
      const h = await b.start(await b.prepare(f.vmId("forcenow"), f.spec));
      const r = await b.stop(h, { timeoutMs: 60_000, force: "now" });
      assert.equal(r.how, "forced");
      assert.equal(await b.state(r.handle), "stopped");
      await b.destroy(r.handle, stopOpts(5_000));
    });

    it("reports through watch what happens behind its back, never what its own calls do", async (t) => {
      const f = get(t);
      if (!f) return;
      const b = f.backend;
      if (!b.watch) {
        t.skip(`${name} observes no changes (no watch)`);
        return;
      }
      if (!f.outside) {
        t.skip(`${name}: the fixture has no way to change a VM behind the backend's back`);
        return;
      }
      const id = f.vmId("observe");
      const seen: ObservedChange[] = [];
      const off = b.watch((c) => {
        if (c.vmId === id) seen.push(c);
      });
      try {
        // Every call of ours changes the VM; none of it is an observation.
        let h = await b.start(await b.prepare(id, f.spec));
        if (b.capabilities().suspend) h = await b.resume(await b.suspend(h));
        h = (await b.stop(h, stopOpts(f.bootTimeoutMs ?? 60_000))).handle;
        h = await b.start(h);
        await delay(SETTLE_MS);
        assert.deepEqual(seen, [], "start, suspend, resume and stop are not observations");

        await f.outside.change(h);
        const c = await first<ObservedChange>("the change made outside", () => seen[0]);
        assert.equal(c.backend, b.tag);
        assert.equal(c.state, f.outside.expect.state);
        assert.equal(c.source, f.outside.expect.source);
        assert.equal(c.guestInitiated ?? false, f.outside.expect.guestInitiated);
        assert.equal(await b.state(h), f.outside.expect.state, "state() agrees with the report");

        await b.destroy(await b.start(c.handle ?? h), stopOpts(5_000));
        await delay(SETTLE_MS);
        assert.equal(seen.length, 1, "nor is a destroy of a running VM (only the outside change)");
      } finally {
        off();
      }
    });

    it("cancels a call whose signal has already fired, touching nothing", async (t) => {
      const f = get(t);
      if (!f) return;
      const b = f.backend;
      const id = f.vmId("abort");
      await expectCode(
        b.prepare(id, f.spec, { signal: AbortSignal.abort() }),
        "hypervisor::aborted",
      );
      assert.equal(
        await b.state({
          id,
          name: id,
          backend: b.tag,
          workDir: "",
          vcpus: 1,
          memoryMb: 64,
          network: { type: "none" },
          uefi: false,
        }),
        "destroyed",
      );
    });
  });
}
