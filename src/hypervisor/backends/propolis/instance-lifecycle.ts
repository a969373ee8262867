/**
 * The life of a VM's Propolis instance: start (boot the zone, wait for its server, ensure,
 * Run, wait for Running) and stop (Stop, a hard halt of the VMM, wait, then halt the zone when
 * the timeout allows).
 * Decisions are taken from Propolis's own state (GET /instance and the state monitor), the
 * zone's state only when the server cannot exist.
 */
import type { VmHandle } from "../../../contracts/index.js";
import { isVmqError } from "../../../lib/errors.js";
import { retry } from "../../../lib/retry.js";
import { checkAborted, HypervisorError } from "../../errors.js";
import type { CallOptions, StopOptions, StopResult } from "../../hypervisor.js";
import type { OwnCalls } from "../shared/own-calls.js";
import { ACTIVE } from "./instance-states.js";
import type { InstanceState } from "./propolis-api.js";
import type { PropolisOptions } from "./propolis-options.js";
import { buildEnsureRequest } from "./propolis-spec.js";
import { HALT, type PropolisVm, type PropolisVms } from "./propolis-vms.js";
import type { ZoneProvisioner } from "./zone-provisioning.js";

const invalid = (msg: string) => new HypervisorError("hypervisor::invalid-state", msg);
const sig = (signal: AbortSignal | undefined) => (signal ? { signal } : {});

export interface LifecycleDeps {
  options: PropolisOptions;
  zones: ZoneProvisioner;
  vms: PropolisVms;
  own: OwnCalls;
}

export class InstanceLifecycle {
  readonly #d: LifecycleDeps;

  constructor(deps: LifecycleDeps) {
    this.#d = deps;
  }

  async start(rec: PropolisVm, opts: CallOptions): Promise<VmHandle> {
    const { zones, options: o } = this.#d;
    const vmId = rec.handle.id;
    const zone = zones.zoneName(vmId);
    const zs = await zones.zoneState(vmId, opts.signal);
    if (zs === "absent")
      throw new HypervisorError("hypervisor::not-found", `zone ${zone} does not exist`);
    let bootedHere = false;
    if (zs === "installed" || zs === "ready") {
      await zones.bootZone(vmId, opts.signal);
      bootedHere = true;
    } else if (zs !== "running") {
      throw invalid(`cannot start ${vmId}: zone ${zone} is ${zs}`);
    }
    try {
      let current = await this.#waitReady(rec, opts.signal);
      if (current !== undefined && (ACTIVE.has(current) || current === "Stopping")) {
        throw invalid(`cannot start ${vmId}: it is ${current}`);
      }
      rec.monitor.start();
      if (current === "Stopped" || current === "Failed") {
        // The old VMM is still being torn down; a new ensure would get 409 until Destroyed.
        current = await this.#waitState(
          rec,
          (s) => s === "Destroyed",
          o.rundownTimeoutMs,
          opts.signal,
        );
      }
      if (current !== "Creating") {
        await rec.client.ensure(this.#ensureBody(rec.handle), sig(opts.signal));
        this.#d.vms.newEpoch(rec, rec.monitor.reset());
      }
      await this.#retryBusy(() => rec.client.requestState("Run", sig(opts.signal)), opts.signal);
      const end = await this.#waitState(
        rec,
        (s) => s === "Running" || s === "Failed" || s === "Destroyed",
        o.startTimeoutMs,
        opts.signal,
      );
      if (end !== "Running") {
        throw new HypervisorError(
          "propolis::start-failed",
          `${vmId} did not start: Propolis reports ${end}`,
        );
      }
      rec.everStarted = true;
      return rec.handle;
    } catch (e) {
      if (bootedHere) {
        // Leave the zone as we found it, so state() keeps telling the truth.
        await rec.monitor.stop();
        const halted = await zones.haltZone(vmId).then(
          () => undefined,
          (h: unknown) => h,
        );
        if (halted !== undefined && isVmqError(e)) {
          throw new HypervisorError(
            "propolis::start-failed",
            `${e.message}; zone ${zone} is still booted`,
            { cause: e, details: { ...e.details, leftBooted: zone } },
          );
        }
      }
      throw e;
    }
  }

  async stop(rec: PropolisVm, opts: StopOptions): Promise<StopResult> {
    const { zones } = this.#d;
    const vmId = rec.handle.id;
    const zone = zones.zoneName(vmId);
    const zs = await zones.zoneState(vmId, opts.signal);
    if (zs === "absent")
      throw new HypervisorError("hypervisor::not-found", `zone ${zone} does not exist`);
    if (zs !== "running") throw invalid(`cannot stop ${vmId}: its zone is ${zs} (not running)`);

    let current: InstanceState | undefined;
    try {
      current = (await rec.client.get(sig(opts.signal))).state;
    } catch (e) {
      if (isVmqError(e, "propolis::no-instance"))
        throw invalid(`cannot stop ${vmId}: no VM is running`);
      // The zone runs but its server does not answer: only the zone can be stopped.
      if (!isVmqError(e, "propolis::unreachable") || opts.force === "never") throw e;
      return {
        handle: await this.haltZone(rec, opts),
        how: opts.force === "now" ? "forced" : "sigkill",
      };
    }
    if (current === "Creating") throw invalid(`cannot stop ${vmId}: it was never started`);
    if (current === "Stopped" || current === "Destroyed")
      throw invalid(`${vmId} is already stopped`);

    // The halt sequence Propolis runs on after answering is ours, until the next ensure.
    this.#d.own.expect(vmId, HALT);
    if (opts.force === "now") return { handle: await this.haltZone(rec, opts), how: "forced" };

    rec.monitor.start();
    try {
      await rec.client.requestState("Stop", sig(opts.signal));
    } catch (e) {
      // 424 after teardown: the VM is already gone, which is what we asked for.
      if (!isVmqError(e, "propolis::no-instance")) throw e;
    }
    try {
      await this.#waitState(
        rec,
        (s) => s === "Stopped" || s === "Destroyed" || s === "Failed",
        opts.timeoutMs,
        opts.signal,
      );
      return { handle: rec.handle, how: this.#d.options.orderlyStopHow };
    } catch (e) {
      if (!isVmqError(e, "propolis::timeout")) throw e;
      if (opts.force === "never") {
        throw new HypervisorError(
          "hypervisor::stop-timeout",
          `${vmId} did not stop within ${opts.timeoutMs} ms (Propolis: ${rec.monitor.latest?.state ?? "unknown"})`,
          { cause: e },
        );
      }
      return { handle: await this.haltZone(rec, opts), how: "sigkill" };
    }
  }

  /** Ends the VMM by halting its zone (the propolis-server process dies with it). */
  async haltZone(rec: PropolisVm, opts: CallOptions): Promise<VmHandle> {
    await rec.monitor.stop();
    await this.#d.zones.haltZone(rec.handle.id, opts.signal);
    rec.everStarted = true;
    return rec.handle;
  }

  /** Waits until the server answers GET /instance; returns its state (undefined: no VM yet). */
  async #waitReady(rec: PropolisVm, signal?: AbortSignal): Promise<InstanceState | undefined> {
    // A booting zone's server refuses connections until it listens: ask again, briefly.
    return retry(
      async () => {
        checkAborted(signal, `start of ${rec.handle.id}`);
        try {
          return (await rec.client.get(sig(signal))).state;
        } catch (e) {
          if (isVmqError(e, "propolis::no-instance")) return undefined;
          throw e;
        }
      },
      {
        baseMs: 25,
        capMs: 500,
        timeoutMs: this.#d.options.readyTimeoutMs,
        retryIf: (e) => isVmqError(e, "propolis::unreachable"),
      },
    );
  }

  #retryBusy(fn: () => Promise<void>, signal?: AbortSignal): Promise<void> {
    return retry(fn, {
      attempts: 20,
      baseMs: 50,
      capMs: 1_000,
      ...(signal ? { signal } : {}),
      retryIf: (e) => isVmqError(e, "propolis::busy"),
    });
  }

  /** Waits on the monitor; timeout → propolis::timeout (the caller decides what it means). */
  async #waitState(
    rec: PropolisVm,
    pred: (s: InstanceState) => boolean,
    timeoutMs: number,
    signal?: AbortSignal,
  ): Promise<InstanceState> {
    const timer = AbortSignal.timeout(Math.max(0, timeoutMs));
    try {
      return await rec.monitor.waitFor(pred, signal ? AbortSignal.any([timer, signal]) : timer);
    } catch (e) {
      checkAborted(signal, `waiting for ${rec.handle.id}`);
      throw new HypervisorError(
        "propolis::timeout",
        `${rec.handle.id} did not reach the expected state in ${timeoutMs} ms (now ${rec.monitor.latest?.state ?? "unknown"})`,
        { cause: e },
      );
    }
  }

  #ensureBody(h: VmHandle) {
    return buildEnsureRequest({
      vmId: h.id,
      name: h.name,
      vcpus: h.vcpus,
      memoryMb: h.memoryMb,
      diskPath: `/dev/zvol/rdsk/${this.#d.zones.dataset(h.id)}`,
      ...(h.seedIsoPath === undefined ? {} : { seedIsoPath: h.seedIsoPath }),
      ...(h.network.type === "vnic" ? { vnic: h.network.name } : {}),
      ...(this.#d.options.hostLabel === undefined ? {} : { hostLabel: this.#d.options.hostLabel }),
    });
  }
}
