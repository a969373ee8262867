/**
 * The QEMU backend (Linux): one work dir per VM under dataDir (qemu-files.ts, made by
 * qemu-prepare.ts), QEMU daemonized so guests outlive the worker, QMP for control and for
 * observing what no command explains (qemu-supervisor.ts), stop escalation in qemu-stop.ts.
 *
 * Calls on one VM run one at a time (state() does not queue), and what QEMU reports while one
 * runs is that call's own doing, never an observation. File-system paths always come from
 * dataDir + vmId, never from a handle's fields.
 */
import { existsSync } from "node:fs";
import { rm, writeFile } from "node:fs/promises";
import { execa } from "execa";
import type {
  BackendTag,
  Capabilities,
  ConsoleEndpoint,
  GuestAddress,
  VmHandle,
  VmSpec,
  VmState,
} from "../../../contracts/index.js";
import { isVmqError } from "../../../lib/errors.js";
import { waitFor } from "../../../lib/retry.js";
import { checkAborted, HypervisorError } from "../../errors.js";
import type {
  CallOptions,
  ChangeListener,
  ConsoleConnection,
  ConsoleHandlers,
  DiskExport,
  Hypervisor,
  StopOptions,
  StopResult,
} from "../../hypervisor.js";
import { ChangeEmitter } from "../shared/change-emitter.js";
import { openUnixConsole } from "../shared/console.js";
import { KeyedMutex } from "../shared/keyed-mutex.js";
import { OwnCalls } from "../shared/own-calls.js";
import { defaultCpuModel, detectAccelerator, type Accelerator } from "./accelerator.js";
import { lookupTapIp } from "./guest-ip.js";
import { isOurQemu, readPidFile } from "./process.js";
import { buildQemuArgs } from "./qemu-command-line.js";
import {
  attachTap,
  probeForward,
  qemuInvocation,
  tapNameFor,
  userNetworkAddress,
} from "./qemu-network.js";
import {
  recordedHandle,
  requireWorkDir,
  vmPaths,
  writeRecord,
  type VmPaths,
} from "./qemu-files.js";
import { freePort, portFree, releasePort } from "./qemu-image.js";
import {
  resolveQemuOptions,
  type QemuBackendOptions,
  type QemuLogger,
  type QemuOptions,
} from "./qemu-options.js";
import { exportQemuDisk } from "./qemu-export.js";
import { prepareQemuVm } from "./qemu-prepare.js";
import { stopQemu } from "./qemu-stop.js";
import { QemuSupervisor } from "./qemu-supervisor.js";
import { mapRunState } from "./run-state.js";

export class QemuBackend implements Hypervisor {
  readonly tag: BackendTag = "qemu";
  /** The accelerator guests run with, decided once at construction. */
  readonly accelerator: Accelerator;
  readonly acceleratorReason: string;
  readonly cpuModel: string;
  readonly #o: QemuOptions;
  readonly #log: QemuLogger | undefined;
  readonly #locks = new KeyedMutex();
  readonly #own = new OwnCalls();
  readonly #changes: ChangeEmitter;
  readonly #sup: QemuSupervisor;

  constructor(opts: QemuBackendOptions) {
    this.#o = resolveQemuOptions(opts);
    const decision = detectAccelerator(this.#o.accelerator);
    this.accelerator = decision.accelerator;
    this.acceleratorReason = decision.reason;
    this.cpuModel = this.#o.cpuModel ?? defaultCpuModel(this.accelerator);
    this.#log = this.#o.logger;
    this.#changes = new ChangeEmitter((e) =>
      this.#log?.error({ err: e }, "qemu: change listener threw"),
    );
    this.#sup = new QemuSupervisor({
      dataDir: this.#o.dataDir,
      qmpTimeoutMs: this.#o.qmpTimeoutMs,
      own: this.#own,
      changes: this.#changes,
      log: this.#log,
    });
    this.#log?.info(
      { accelerator: this.accelerator, cpuModel: this.cpuModel, reason: this.acceleratorReason },
      "qemu backend: accelerator chosen",
    );
  }

  capabilities(): Capabilities {
    return {
      suspend: true,
      reboot: false,
      uefi: true,
      guestIp: true,
      console: "unix-socket",
      observesChanges: true,
    };
  }

  #paths(vmId: string): VmPaths {
    return vmPaths(this.#o.dataDir, vmId);
  }

  /** One of our calls on a VM: alone on it, and its effects are not observations. */
  async #call<T>(vmId: string, fn: () => Promise<T>): Promise<T> {
    return this.#locks.run(vmId, () => this.#own.run(vmId, fn));
  }

  // ---- Hypervisor ------------------------------------------------------------------------

  async prepare(vmId: string, spec: VmSpec, opts: CallOptions = {}): Promise<VmHandle> {
    checkAborted(opts.signal, "qemu prepare");
    return this.#call(vmId, async () => {
      const { handle, image } = await prepareQemuVm(
        this.#o,
        this.accelerator,
        vmId,
        spec,
        opts.signal,
      );
      this.#log?.info({ vmId, image, workDir: handle.workDir }, "qemu: prepared");
      return handle;
    });
  }

  async start(vm: VmHandle, opts: CallOptions = {}): Promise<VmHandle> {
    checkAborted(opts.signal, "qemu start");
    return this.#call(vm.id, () => this.#start(vm, opts));
  }

  async #start(vm: VmHandle, opts: CallOptions): Promise<VmHandle> {
    const p = this.#paths(vm.id);
    requireWorkDir(p, vm.id);
    const live = await this.#sup.livePid(vm.id);
    if (live !== undefined) {
      throw new HypervisorError(
        "hypervisor::invalid-state",
        `qemu VM ${vm.id} is already running (pid ${live})`,
      );
    }
    let handle: VmHandle = { ...vm, workDir: p.dir, qmpSocket: p.qmp, consoleSocket: p.console };
    if (
      handle.network.type === "user" &&
      (handle.sshHostPort === undefined || !(await portFree(handle.sshHostPort)))
    ) {
      handle = { ...handle, sshHostPort: await freePort(vm.id) };
    }
    await Promise.all([p.qmp, p.console, p.pid].map((f) => rm(f, { force: true })));
    const tap =
      handle.network.type === "tap" && this.#o.tap === "direct"
        ? { device: tapNameFor(this.#o.dataDir, vm.id), bridge: handle.network.bridge }
        : undefined;
    const args = buildQemuArgs({
      vmId: vm.id,
      accelerator: this.accelerator,
      cpuModel: this.cpuModel,
      machine: this.#o.machine,
      vcpus: handle.vcpus,
      memoryMb: handle.memoryMb,
      overlayPath: p.overlay,
      seedIsoPath: existsSync(p.seed) ? p.seed : undefined,
      qmpSocket: p.qmp,
      consoleSocket: p.console,
      consoleLog: p.consoleLog,
      pidFile: p.pid,
      network: handle.network,
      macAddr: handle.macAddr,
      sshHostPort: handle.sshHostPort,
      tapDevice: tap?.device,
      uefi: handle.uefi ? { code: this.#o.ovmfCode, vars: p.vars } : undefined,
      vnc: this.#o.vnc,
    });
    checkAborted(opts.signal, "qemu start");
    const run = qemuInvocation(this.#o.qemuBinary, args, this.#o.netns);
    const r = await execa(run.file, run.args, {
      reject: false,
      timeout: this.#o.startTimeoutMs,
      stdin: "ignore",
      cwd: p.dir,
    });
    if (r.exitCode !== 0) {
      await this.#sup.killStray(p);
      const enoent = (r.cause as NodeJS.ErrnoException | undefined)?.code === "ENOENT";
      const why = enoent
        ? `${this.#o.qemuBinary} not found`
        : (r.stderr || (r.message ?? "")).trim().split("\n").slice(0, 3).join(" | ");
      throw new HypervisorError("qemu::spawn-failed", `QEMU did not start: ${why}`);
    }
    const exited = () =>
      new HypervisorError("qemu::spawn-failed", "QEMU exited right after starting", {
        hint: "See console.log in the work dir; check the image boots.",
      });
    const pid = await readPidFile(p.pid);
    if (pid === undefined) throw exited();
    handle = { ...handle, pid, accelerator: this.accelerator };
    try {
      // Time to vm.started is what a scheduler waits for: the independent steps overlap (the
      // pid's identity, QMP, the bridge; then the status query and the started marker).
      const attaching = this.#sup.attach(handle, pid, this.#o.startTimeoutMs);
      attaching.catch(() => undefined); // awaited below; a QEMU that is not ours wins
      const [ours] = await Promise.all([
        isOurQemu(pid, p.qmp),
        // The guest is still in its firmware: on the bridge before it asks for an address.
        tap ? attachTap(this.#o.netns, tap.device, tap.bridge) : undefined,
      ]);
      if (!ours) throw exited();
      const m = await attaching;
      const [st] = await Promise.all([
        m.client.execute<{ status?: string }>("query-status"),
        writeFile(p.started, new Date().toISOString()),
      ]);
      if (mapRunState(st.status) !== "running") {
        throw new HypervisorError(
          "qemu::spawn-failed",
          `QEMU started in state ${String(st.status)}`,
        );
      }
      if (this.#o.vnc) {
        const v = await m.client.execute<{ host?: string; service?: string }>("query-vnc");
        if (v.host && v.service) handle = { ...handle, vncAddr: `${v.host}:${v.service}` };
      }
      m.handle = handle;
      checkAborted(opts.signal, "qemu start");
    } catch (e) {
      // A start that fails (or is cancelled) after spawning leaves no QEMU behind.
      await this.#sup.killStray(p);
      this.#sup.drop(vm.id);
      throw e;
    }
    await writeRecord(p, handle);
    this.#log?.info({ vmId: vm.id, pid, accelerator: this.accelerator }, "qemu: started");
    return handle;
  }

  async stop(vm: VmHandle, opts: StopOptions): Promise<StopResult> {
    checkAborted(opts.signal, "qemu stop");
    return this.#call(vm.id, () => this.#stop(vm, opts));
  }

  #stop(vm: VmHandle, opts: StopOptions): Promise<StopResult> {
    const { powerdownRetryMs, killGraceMs } = this.#o;
    const deps = { supervisor: this.#sup, paths: this.#paths(vm.id), log: this.#log };
    return stopQemu({ ...deps, powerdownRetryMs, killGraceMs }, vm, opts);
  }

  async suspend(vm: VmHandle, opts: CallOptions = {}): Promise<VmHandle> {
    return this.#pauseOrCont(vm, opts, "suspend");
  }

  async resume(vm: VmHandle, opts: CallOptions = {}): Promise<VmHandle> {
    return this.#pauseOrCont(vm, opts, "resume");
  }

  async #pauseOrCont(vm: VmHandle, opts: CallOptions, op: "suspend" | "resume"): Promise<VmHandle> {
    checkAborted(opts.signal, `qemu ${op}`);
    return this.#call(vm.id, async () => {
      requireWorkDir(this.#paths(vm.id), vm.id);
      const pid = await this.#sup.livePid(vm.id);
      if (pid === undefined) {
        throw new HypervisorError(
          "hypervisor::invalid-state",
          `cannot ${op} qemu VM ${vm.id}: it is not running`,
        );
      }
      const m = await this.#sup.monitor(vm.id, pid);
      const st = await m.client.execute<{ status?: string }>(
        "query-status",
        undefined,
        opts.signal ? { signal: opts.signal } : {},
      );
      const state = mapRunState(st.status);
      const wrong = () =>
        new HypervisorError(
          "hypervisor::invalid-state",
          `cannot ${op} qemu VM ${vm.id} in state ${state}`,
        );
      if (op === "suspend") {
        if (state !== "running") throw wrong();
        await m.client.execute("stop");
      } else {
        if (state !== "suspended") throw wrong();
        await m.client.execute(st.status === "suspended" ? "system_wakeup" : "cont");
      }
      return { ...vm, pid };
    });
  }

  async destroy(vm: VmHandle, opts: StopOptions): Promise<void> {
    checkAborted(opts.signal, "qemu destroy");
    const p = this.#paths(vm.id);
    await this.#call(vm.id, async () => {
      if (!existsSync(p.dir)) {
        releasePort(vm.id); // gone already (destroyed by an earlier try): its port too
        return;
      }
      if ((await this.#sup.livePid(vm.id)) !== undefined) {
        try {
          await this.#stop(vm, opts);
        } catch (e) {
          // Gone in between is fine; anything else (stop-timeout with force never) keeps it.
          if (!isVmqError(e, "hypervisor::invalid-state")) throw e;
        }
      }
      this.#sup.drop(vm.id);
      await rm(p.dir, { recursive: true, force: true });
      releasePort(vm.id);
      this.#log?.info({ vmId: vm.id }, "qemu: destroyed");
    });
  }

  /** The disk flattened into one qcow2, only while no QEMU runs on it. */
  async exportDisk(vm: VmHandle, opts: CallOptions = {}): Promise<DiskExport> {
    checkAborted(opts.signal, "qemu export");
    return this.#call(vm.id, async () => {
      const live = await this.#sup.livePid(vm.id);
      if (live !== undefined)
        throw new HypervisorError(
          "hypervisor::invalid-state",
          `qemu VM ${vm.id} is running (pid ${live}); stop it before exporting its disk`,
        );
      return exportQemuDisk(this.#o.qemuImgBinary, this.#paths(vm.id), vm.id, opts.signal);
    });
  }

  async state(vm: VmHandle, opts: CallOptions = {}): Promise<VmState> {
    checkAborted(opts.signal, "qemu state");
    const p = this.#paths(vm.id);
    if (!existsSync(p.dir)) return "destroyed";
    const pid = await this.#sup.livePid(vm.id);
    if (pid === undefined) return existsSync(p.started) ? "stopped" : "prepared";
    try {
      const m = await this.#sup.monitor(vm.id, pid);
      const st = await m.client.execute<{ status?: string }>("query-status", undefined, {
        timeoutMs: 5000,
        ...(opts.signal ? { signal: opts.signal } : {}),
      });
      return mapRunState(st.status);
    } catch (e) {
      // Alive but QMP unreachable (busy with another client, hung): we cannot tell.
      if (isVmqError(e, "hypervisor::aborted")) throw e;
      if ((await this.#sup.livePid(vm.id)) === undefined) return "stopped";
      return "unknown";
    }
  }

  async guestIp(vm: VmHandle, opts: CallOptions = {}): Promise<string> {
    return (await this.guestAddress(vm, opts)).ip;
  }

  /**
   * The guest's address once it has one (waiting up to ipTimeoutMs): under user networking
   * SLIRP's guest address with the forwarded host port (probed: the guest must answer), under
   * tap the address leased to this VM's MAC.
   */
  async guestAddress(vm: VmHandle, opts: CallOptions = {}): Promise<GuestAddress> {
    checkAborted(opts.signal, "qemu guestIp");
    requireWorkDir(this.#paths(vm.id), vm.id);
    if ((await this.#sup.livePid(vm.id)) === undefined) {
      throw new HypervisorError(
        "hypervisor::invalid-state",
        `qemu VM ${vm.id} is not running; it has no address`,
      );
    }
    const net = vm.network;
    const mac = vm.macAddr;
    let look: () => Promise<GuestAddress | undefined>;
    let where: string;
    if (net.type === "user" && vm.sshHostPort !== undefined) {
      const port = vm.sshHostPort;
      look = async () => ((await probeForward(port, 1000)) ? userNetworkAddress(vm) : undefined);
      where = `through host port ${port} (user networking)`;
    } else if (net.type === "tap" && mac) {
      const { leaseFiles, netns } = this.#o;
      look = async () => {
        const ip = await lookupTapIp(net.bridge, mac, leaseFiles, netns);
        return ip ? { ip } : undefined;
      };
      where = `for ${mac} on ${net.bridge}`;
    } else {
      throw new HypervisorError(
        "hypervisor::unsupported",
        `qemu VM ${vm.id} has no network address (${net.type})`,
      );
    }
    let found: GuestAddress | undefined;
    try {
      found = await waitFor(look, {
        intervalMs: 500,
        timeoutMs: this.#o.ipTimeoutMs,
        ...(opts.signal ? { signal: opts.signal } : {}),
      });
    } catch (e) {
      if (!opts.signal?.aborted) throw e;
      throw new HypervisorError("hypervisor::aborted", "qemu guestIp was cancelled", { cause: e });
    }
    if (found) return found;
    throw new HypervisorError(
      "network::ip-discovery-timeout",
      `qemu VM ${vm.id} has no address ${where} after ${this.#o.ipTimeoutMs} ms`,
      { hint: "The guest may still be booting, or it has no DHCP client on its NIC." },
    );
  }

  consoleEndpoint(vm: VmHandle): ConsoleEndpoint {
    return { type: "unix-socket", path: this.#paths(vm.id).console };
  }

  /** The serial console's unix socket (QEMU's chardev server). */
  async openConsole(
    vm: VmHandle,
    handlers: ConsoleHandlers,
    opts: CallOptions = {},
  ): Promise<ConsoleConnection> {
    return openUnixConsole(this.#paths(vm.id).console, vm.id, handlers, opts);
  }

  /** Finds a QEMU that outlived a worker again (pid file + /proc identity) and watches it. */
  async adopt(vm: VmHandle, opts: CallOptions = {}): Promise<void> {
    checkAborted(opts.signal, "qemu adopt");
    const p = this.#paths(vm.id);
    if (!existsSync(p.dir)) return;
    const pid = await this.#sup.livePid(vm.id);
    if (pid === undefined) return;
    const m = await this.#sup.monitor(vm.id, pid);
    m.handle = { ...vm, pid, workDir: p.dir, qmpSocket: p.qmp, consoleSocket: p.console };
    this.#log?.info({ vmId: vm.id, pid }, "qemu: adopted a running VM");
  }

  /** vm.json, the handle prepare wrote last (after every other step succeeded). */
  async recorded(vmId: string, opts: CallOptions = {}): Promise<VmHandle | undefined> {
    checkAborted(opts.signal, `qemu record of ${vmId}`);
    return recordedHandle(this.#paths(vmId), vmId);
  }

  watch(listener: ChangeListener): () => void {
    return this.#changes.watch(listener);
  }

  /** Closes QMP connections; guests keep running (adopt finds them again). */
  async close(): Promise<void> {
    await this.#sup.close();
  }
}
