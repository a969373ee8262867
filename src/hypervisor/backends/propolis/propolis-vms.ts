/**
 * The VMs the Propolis backend knows: per VM its server's client and state monitor, and the
 * flags of the current generation sequence, from which monitor updates that no call of ours
 * explains become ObservedChanges.
 */
import { ID_PATTERN } from "../../../contracts/ids.js";
import type { VmHandle, VmState } from "../../../contracts/index.js";
import { HypervisorError } from "../../errors.js";
import type { ChangeEmitter } from "../shared/change-emitter.js";
import type { OwnCalls } from "../shared/own-calls.js";
import { HALTING } from "./instance-states.js";
import { PropolisClient } from "./propolis-client.js";
import type { PropolisOptions } from "./propolis-options.js";
import { PropolisStateMonitor, type MonitorUpdate } from "./propolis-state-monitor.js";

export interface PropolisVm {
  handle: VmHandle;
  client: PropolisClient;
  monitor: PropolisStateMonitor;
  everStarted: boolean;
  /** The generation sequence the flags below belong to (reset on every ensure/restart). */
  epoch: number;
  haltSeen: boolean;
  guestHalt: boolean;
  haltReported: boolean;
}

/** What our Stop sets off and Propolis finishes after answering: Stopping, Stopped, Destroyed. */
export const HALT = "halt";

export interface VmsDeps {
  options: PropolisOptions;
  own: OwnCalls;
  changes: ChangeEmitter;
  /** A VM found (again) holds its server's address. */
  claimAddress: (addr: string) => void;
}

export class PropolisVms {
  readonly #d: VmsDeps;
  readonly #vms = new Map<string, PropolisVm>();

  constructor(deps: VmsDeps) {
    this.#d = deps;
  }

  has(vmId: string): boolean {
    return this.#vms.has(vmId);
  }

  /** The VM's record; one is made from the handle when it carries a server address. */
  find(vm: VmHandle): PropolisVm | undefined {
    const known = this.#vms.get(vm.id);
    if (known) return known;
    if (vm.backend !== "propolis" || vm.propolisAddr === undefined || !ID_PATTERN.test(vm.id))
      return undefined;
    return this.add(vm);
  }

  get(vm: VmHandle): PropolisVm {
    const rec = this.find(vm);
    if (!rec)
      throw new HypervisorError(
        "hypervisor::not-found",
        `propolis VM ${vm.id} has no server address`,
      );
    return rec;
  }

  add(handle: VmHandle): PropolisVm {
    const o = this.#d.options;
    const client = new PropolisClient(handle.propolisAddr ?? "", { apiVersion: o.apiVersion });
    this.#d.claimAddress(client.addr);
    const rec: PropolisVm = {
      handle,
      client,
      monitor: new PropolisStateMonitor(client, {
        onUpdate: (u) => this.#onUpdate(rec, u),
        onError: (e) => o.onError?.(e, handle.id),
        backoffBaseMs: o.monitorBackoffBaseMs,
        backoffCapMs: o.monitorBackoffCapMs,
      }),
      everStarted: false,
      epoch: -1,
      haltSeen: false,
      guestHalt: false,
      haltReported: false,
    };
    this.#vms.set(handle.id, rec);
    return rec;
  }

  delete(vmId: string): void {
    this.#vms.delete(vmId);
  }

  /** Stops every monitor loop; never touches a VM. */
  async close(): Promise<void> {
    await Promise.all([...this.#vms.values()].map((v) => v.monitor.stop()));
  }

  /** A new generation sequence (our ensure, or a server restarted under us). */
  newEpoch(rec: PropolisVm, epoch: number): void {
    rec.epoch = epoch;
    rec.haltSeen = false;
    rec.guestHalt = false;
    rec.haltReported = false;
    this.#d.own.settle(rec.handle.id); // nothing of ours is pending in a fresh sequence
  }

  /** Turns monitor updates no call of ours explains into ObservedChanges. */
  #onUpdate(rec: PropolisVm, u: MonitorUpdate): void {
    if (u.epoch !== rec.epoch) this.newEpoch(rec, u.epoch);
    const vmId = rec.handle.id;
    const emit = (state: VmState, detail: string, guestInitiated: boolean) =>
      this.#d.changes.emit({
        vmId,
        backend: "propolis",
        state,
        source: "propolis",
        guestInitiated,
        detail,
        handle: rec.handle,
      });
    if (HALTING.has(u.state)) {
      if (!rec.haltSeen) {
        rec.haltSeen = true;
        // A halt we did not ask for, of a VM that had started: the guest powered off.
        rec.guestHalt =
          !this.#d.own.isOurs(vmId, HALT) && u.previous !== undefined && u.previous !== "Creating";
      }
      if (rec.guestHalt && u.state !== "Stopping" && !rec.haltReported) {
        rec.haltReported = true;
        rec.everStarted = true;
        emit("stopped", `the guest halted (Propolis ${u.state})`, true);
      }
      return;
    }
    if (this.#d.own.isOurs(vmId)) return; // the running call reports what it caused
    if (u.state === "Rebooting" && u.previous !== "Rebooting") {
      emit("running", "the guest rebooted (Propolis Rebooting)", true);
    } else if (u.state === "Running" && u.previous === "Running") {
      emit("running", "the guest rebooted (intermediate states coalesced)", true);
    } else if (u.state === "Failed" && u.previous !== "Failed") {
      emit("failed", "Propolis reports the VM Failed", false);
    }
  }
}
