/**
 * The Propolis backend (illumos): one zone per VM whose boot runs one propolis-server, reached
 * at an address allocated per VM (zone-provisioning.ts); the instance's life is driven through
 * the server's API (instance-lifecycle.ts) and watched by a state monitor (propolis-vms.ts).
 * Calls on one VM run one at a time, and what Propolis reports while one runs is its own doing.
 *
 * Stop outcomes ("how"), honestly: Propolis Stop is a hard halt of the VMM ("not a graceful
 * shutdown"; the guest is never asked), so a completed API Stop is recorded as `forced`, as is
 * `force: "now"` (zone halt at once); a `zoneadm halt` after the timeout (every process of the
 * zone, propolis-server included, is killed) is `sigkill`. There is no `acpi` on Propolis.
 */
import { ID_PATTERN } from "../../../contracts/ids.js";
import type {
  Capabilities,
  ConsoleEndpoint,
  VmHandle,
  VmSpec,
  VmState,
} from "../../../contracts/index.js";
import { isVmqError } from "../../../lib/errors.js";
import { checkAborted, HypervisorError } from "../../errors.js";
import type {
  CallOptions,
  ChangeListener,
  ConsoleConnection,
  ConsoleHandlers,
  Hypervisor,
  StopOptions,
  StopResult,
} from "../../hypervisor.js";
import { ChangeEmitter } from "../shared/change-emitter.js";
import { KeyedMutex } from "../shared/keyed-mutex.js";
import { OwnCalls } from "../shared/own-calls.js";
import { CommandRunner } from "./command-runner.js";
import { mapInstanceState } from "./instance-states.js";
import { InstanceLifecycle } from "./instance-lifecycle.js";
import {
  resolvePropolisOptions,
  type PropolisBackendOptions,
  type PropolisOptions,
} from "./propolis-options.js";
import { openSerialConsole, serialUrl } from "./propolis-serial.js";
import { PropolisVms } from "./propolis-vms.js";
import { guestIpFromNeighbours } from "./zone-network.js";
import { ZoneProvisioner } from "./zone-provisioning.js";

const invalid = (msg: string) => new HypervisorError("hypervisor::invalid-state", msg);
const sig = (signal: AbortSignal | undefined) => (signal ? { signal } : {});

export class PropolisBackend implements Hypervisor {
  readonly tag = "propolis" as const;
  readonly #o: PropolisOptions;
  readonly #runner: CommandRunner;
  readonly #locks = new KeyedMutex();
  readonly #own = new OwnCalls();
  readonly #changes: ChangeEmitter;
  readonly #zones: ZoneProvisioner;
  readonly #vms: PropolisVms;
  readonly #life: InstanceLifecycle;

  constructor(opts: PropolisBackendOptions = {}) {
    this.#o = resolvePropolisOptions(opts);
    this.#runner = this.#o.runner ?? new CommandRunner(this.#o.runnerOptions);
    this.#changes = new ChangeEmitter((e, c) => this.#o.onError?.(e, c.vmId));
    this.#zones = new ZoneProvisioner(this.#o, this.#runner);
    this.#vms = new PropolisVms({
      options: this.#o,
      own: this.#own,
      changes: this.#changes,
      claimAddress: (addr) => this.#zones.claimAddress(addr),
    });
    this.#life = new InstanceLifecycle({
      options: this.#o,
      zones: this.#zones,
      vms: this.#vms,
      own: this.#own,
    });
  }

  capabilities(): Capabilities {
    return {
      suspend: false,
      reboot: false,
      uefi: true,
      guestIp: true,
      console: "websocket",
      observesChanges: true,
    };
  }

  watch(listener: ChangeListener): () => void {
    return this.#changes.watch(listener);
  }

  /** Stops every monitor loop; never touches a VM. */
  async close(): Promise<void> {
    await this.#vms.close();
  }

  /** One of our calls on a VM: alone on it, and its effects are not observations. */
  async #call<T>(vmId: string, fn: () => Promise<T>): Promise<T> {
    return this.#locks.run(vmId, () => this.#own.run(vmId, fn));
  }

  async prepare(vmId: string, spec: VmSpec, opts: CallOptions = {}): Promise<VmHandle> {
    checkAborted(opts.signal, `prepare of ${vmId}`);
    this.#zones.zoneName(vmId); // a bad vmId is refused before anything else
    return this.#call(vmId, async () => {
      if (this.#vms.has(vmId)) throw invalid(`propolis VM ${vmId} already exists`);
      const handle = await this.#zones.provision(vmId, spec, opts.signal);
      this.#vms.add(handle);
      return handle;
    });
  }

  async start(vm: VmHandle, opts: CallOptions = {}): Promise<VmHandle> {
    checkAborted(opts.signal, `start of ${vm.id}`);
    return this.#call(vm.id, () => this.#life.start(this.#vms.get(vm), opts));
  }

  async stop(vm: VmHandle, opts: StopOptions): Promise<StopResult> {
    checkAborted(opts.signal, `stop of ${vm.id}`);
    return this.#call(vm.id, () => this.#life.stop(this.#vms.get(vm), opts));
  }

  async suspend(vm: VmHandle): Promise<VmHandle> {
    await Promise.resolve();
    throw new HypervisorError(
      "hypervisor::unsupported",
      `propolis-server has no pause API (${vm.id})`,
    );
  }

  async resume(vm: VmHandle): Promise<VmHandle> {
    await Promise.resolve();
    throw new HypervisorError(
      "hypervisor::unsupported",
      `propolis-server has no resume API (${vm.id})`,
    );
  }

  async destroy(vm: VmHandle, opts: StopOptions): Promise<void> {
    checkAborted(opts.signal, `destroy of ${vm.id}`);
    await this.#call(vm.id, async () => {
      const rec = this.#vms.find(vm);
      let zs = await this.#zones.zoneState(vm.id, opts.signal);
      if (zs === "running" || zs === "ready") {
        if (rec && zs === "running" && opts.force !== "now") {
          // Give Propolis its chance to stop the VMM first; the zone halt follows regardless.
          try {
            await this.#life.stop(rec, { ...opts, force: "never" });
          } catch (e) {
            if (!isVmqError(e) || e.code === "hypervisor::aborted") throw e;
          }
        }
        await rec?.monitor.stop();
        await this.#zones.haltZone(vm.id, opts.signal);
        zs = "installed";
      }
      await rec?.monitor.stop();
      await this.#zones.teardown(vm, zs, opts.signal);
      this.#vms.delete(vm.id);
      this.#own.settle(vm.id);
    });
  }

  async state(vm: VmHandle, opts: CallOptions = {}): Promise<VmState> {
    checkAborted(opts.signal, `state of ${vm.id}`);
    if (!ID_PATTERN.test(vm.id)) return "unknown";
    const zs = await this.#zones.zoneState(vm.id, opts.signal);
    if (zs === "absent") return "destroyed";
    const rec = this.#vms.find(vm);
    const idle: VmState = rec?.everStarted ? "stopped" : "prepared";
    switch (zs) {
      case "installed":
      case "ready":
        return idle;
      case "configured":
      case "incomplete":
      case "unavailable":
        return "failed";
      case "shutting_down":
      case "down":
        return "unknown";
      case "running":
        break;
    }
    if (!rec) return "unknown";
    try {
      return mapInstanceState((await rec.client.get(sig(opts.signal))).state);
    } catch (e) {
      if (isVmqError(e, "propolis::no-instance")) return idle;
      if (isVmqError(e, "hypervisor::aborted")) throw e;
      return "unknown";
    }
  }

  /**
   * The guest's address, by its NIC's MAC (its VNIC's) in the zone's ARP and NDP tables: never
   * the zone's own addresses, never another VM's. An entry appears once the guest has talked
   * on its link (docs/propolis.md); until then network::no-address.
   */
  async guestIp(vm: VmHandle, opts: CallOptions = {}): Promise<string> {
    checkAborted(opts.signal, `guestIp of ${vm.id}`);
    if (vm.network.type !== "vnic") {
      throw new HypervisorError("network::no-address", `${vm.id} has no network interface`);
    }
    const s = await this.state(vm, opts);
    if (s !== "running") throw invalid(`${vm.id} is ${s}; it has no address`);
    const mac = await this.#zones.guestMac(vm.network.name, opts.signal);
    const zone = this.#zones.zoneName(vm.id);
    const tables = await Promise.all(
      [
        ["arp", "-an"],
        ["ndp", "-an"],
      ].map(async (cmd) => {
        const r = await this.#runner.run("zlogin", [zone, ...cmd], {
          ...sig(opts.signal),
          allowFailure: true,
        });
        return r.exitCode === 0 ? r.stdout : "";
      }),
    );
    const own = this.#zones.controlIp(vm);
    const ip = guestIpFromNeighbours(tables.join("\n"), mac, own === undefined ? [] : [own]);
    if (ip === undefined) {
      throw new HypervisorError(
        "network::no-address",
        `${vm.id} (MAC ${mac}) has no address in zone ${zone}'s ARP/NDP tables yet`,
        { details: { mac } },
      );
    }
    return ip;
  }

  /** The websocket needs the `api-version` header on the upgrade (see propolis-serial.ts). */
  consoleEndpoint(vm: VmHandle): ConsoleEndpoint {
    if (vm.propolisAddr === undefined) return { type: "none" };
    return { type: "websocket", url: serialUrl(vm.propolisAddr) };
  }

  async openConsole(
    vm: VmHandle,
    handlers: ConsoleHandlers,
    opts: CallOptions = {},
  ): Promise<ConsoleConnection> {
    if (vm.propolisAddr === undefined) {
      throw new HypervisorError(
        "console::unavailable",
        `propolis VM ${vm.id} has no server address, so no serial console`,
      );
    }
    return openSerialConsole(vm.propolisAddr, handlers, {
      ...opts,
      apiVersion: this.#o.apiVersion,
    });
  }

  /** Re-attaches the monitor to a VM found running after a worker restart. */
  async adopt(vm: VmHandle, opts: CallOptions = {}): Promise<void> {
    checkAborted(opts.signal, `adopt of ${vm.id}`);
    const rec = this.#vms.get(vm);
    if ((await this.#zones.zoneState(vm.id, opts.signal)) !== "running") return;
    try {
      const s = (await rec.client.get(sig(opts.signal))).state;
      if (s !== "Creating") rec.everStarted = true;
    } catch (e) {
      if (!isVmqError(e, "propolis::no-instance") && !isVmqError(e, "propolis::unreachable"))
        throw e;
    }
    rec.monitor.start();
  }
}
