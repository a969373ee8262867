/**
 * The QEMU backend (Linux): one work dir per VM under dataDir, a qcow2 overlay over a base
 * image from the image roots, QEMU daemonized so guests outlive the worker, QMP for control
 * and for observing what no command explains.
 *
 * Decisions:
 * - No `-no-shutdown`: when the guest powers off, QEMU exits, so a guest that shuts down while
 *   the worker is away leaves no process behind. The SHUTDOWN event (with its reason) arrives
 *   just before the QMP socket closes; the observed change is reported once the process is gone.
 * - Graceful stop re-sends `system_powerdown` every `powerdownRetryMs`: a guest still booting
 *   misses a button pressed before its ACPI driver is up.
 * - A suspended VM is continued before a graceful stop (a paused guest cannot see the button).
 * - File-system paths always come from dataDir + vmId, never from a handle's fields.
 */
import { existsSync } from "node:fs";
import { copyFile, mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import {
  VmHandle,
  type BackendTag,
  type Capabilities,
  type ConsoleEndpoint,
  type VmSpec,
  type VmState,
} from "../../../contracts/index.js";
import { isVmqError } from "../../../lib/errors.js";
import { sleep } from "../../../lib/time.js";
import type { Logger } from "../../../observability/logger.js";
import { checkAborted, HypervisorError } from "../../errors.js";
import type {
  CallOptions,
  ChangeListener,
  Hypervisor,
  ObservedChange,
  StopOptions,
  StopResult,
} from "../../hypervisor.js";
import {
  defaultCpuModel,
  detectAccelerator,
  type Accelerator,
  type AcceleratorChoice,
} from "./accelerator.js";
import { lookupTapIp } from "./guest-ip.js";
import { isOurQemu, readPidFile, signalOurQemu, waitForExit } from "./process.js";
import { buildQemuArgs } from "./qemu-command-line.js";
import {
  createOverlay,
  createSeedIso,
  freePort,
  releasePort,
  macFor,
  portFree,
  resolveImagePath,
  workDirFor,
} from "./qemu-image.js";
import { QmpClient, type QmpEvent } from "./qmp-client.js";
import { mapRunState } from "./run-state.js";

export type QemuLogger = Pick<Logger, "info" | "warn" | "error" | "debug">;

export interface QemuBackendOptions {
  /** Where per-VM work dirs live (`<dataDir>/<vmId>`). Required. */
  dataDir: string;
  /** Folders base images must resolve into (after symlinks). Required; empty refuses all. */
  imageRoots: string[];
  /** Default "qemu-system-x86_64" (package qemu-system-x86). */
  qemuBinary?: string;
  /** Default "qemu-img" (package qemu-utils). */
  qemuImgBinary?: string;
  /** Seed ISO builder: "genisoimage" (default), "mkisofs" or "xorriso" (run as -as mkisofs). */
  isoTool?: string;
  /** "auto" (default): KVM when /dev/kvm opens read-write, else TCG. */
  accelerator?: AcceleratorChoice;
  /** Default: "max" under TCG, "kvm64" under KVM (never "host": it aborts on some KVM hosts). */
  cpuModel?: string;
  /** Default "q35". */
  machine?: string;
  /** Default /usr/share/OVMF/OVMF_CODE_4M.fd (package ovmf). */
  ovmfCode?: string;
  /** Template copied per VM; default /usr/share/OVMF/OVMF_VARS_4M.fd. */
  ovmfVars?: string;
  /** VNC on 127.0.0.1 (first free display from :0); default false (no display at all). */
  vnc?: boolean;
  /** Logger (pino-like); default: silent. user-data is never logged. */
  logger?: QemuLogger | undefined;
  /** QMP command timeout; default 10000 ms. */
  qmpTimeoutMs?: number;
  /** How long start waits for QEMU's QMP socket; default 15000 ms. */
  startTimeoutMs?: number;
  /** Interval between repeated ACPI power-button presses during a graceful stop; default 2000 ms. */
  powerdownRetryMs?: number;
  /** SIGTERM to SIGKILL delay when escalating; default 3000 ms. */
  killGraceMs?: number;
  /** How long guestIp waits for a tap guest's address; default 60000 ms. */
  ipTimeoutMs?: number;
}

interface Monitor {
  vmId: string;
  pid: number;
  qmpSocket: string;
  client: QmpClient;
  handle: VmHandle;
  /** Our own calls in flight: their STOP/RESUME/SHUTDOWN events are not observations. */
  ownCalls: number;
  /** Set by stop/destroy: the coming exit is ours. */
  expectExit: boolean;
  lastShutdown?: { reason: string; guest: boolean } | undefined;
  /** Woken on every event and on disconnect (stop waits on these instead of polling). */
  wakers: Set<() => void>;
}

const SOCKET_PATH_MAX = 107;

export class QemuBackend implements Hypervisor {
  readonly tag: BackendTag = "qemu";
  /** The accelerator guests run with, decided once at construction. */
  readonly accelerator: Accelerator;
  readonly acceleratorReason: string;
  readonly cpuModel: string;
  readonly #o: Required<Omit<QemuBackendOptions, "logger" | "cpuModel">>;
  readonly #log: QemuLogger | undefined;
  readonly #monitors = new Map<string, Monitor>();
  readonly #connecting = new Map<string, Promise<Monitor | undefined>>();
  readonly #listeners = new Set<ChangeListener>();
  readonly #locks = new Map<string, Promise<unknown>>();
  #closed = false;

  constructor(opts: QemuBackendOptions) {
    const decision = detectAccelerator(opts.accelerator ?? "auto");
    this.accelerator = decision.accelerator;
    this.acceleratorReason = decision.reason;
    this.cpuModel = opts.cpuModel ?? defaultCpuModel(this.accelerator);
    this.#log = opts.logger;
    this.#o = {
      dataDir: opts.dataDir,
      imageRoots: opts.imageRoots,
      qemuBinary: opts.qemuBinary ?? "qemu-system-x86_64",
      qemuImgBinary: opts.qemuImgBinary ?? "qemu-img",
      isoTool: opts.isoTool ?? "genisoimage",
      accelerator: opts.accelerator ?? "auto",
      machine: opts.machine ?? "q35",
      ovmfCode: opts.ovmfCode ?? "/usr/share/OVMF/OVMF_CODE_4M.fd",
      ovmfVars: opts.ovmfVars ?? "/usr/share/OVMF/OVMF_VARS_4M.fd",
      vnc: opts.vnc ?? false,
      qmpTimeoutMs: opts.qmpTimeoutMs ?? 10_000,
      startTimeoutMs: opts.startTimeoutMs ?? 15_000,
      powerdownRetryMs: opts.powerdownRetryMs ?? 2000,
      killGraceMs: opts.killGraceMs ?? 3000,
      ipTimeoutMs: opts.ipTimeoutMs ?? 60_000,
    };
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

  // ---- paths (always derived from dataDir + vmId) -----------------------------------------

  #paths(vmId: string): VmPaths {
    return vmPaths(this.#o.dataDir, vmId);
  }

  // ---- Hypervisor ------------------------------------------------------------------------

  async prepare(vmId: string, spec: VmSpec, opts: CallOptions = {}): Promise<VmHandle> {
    checkAborted(opts.signal, "qemu prepare");
    const p = this.#paths(vmId);
    return this.#locked(vmId, async () => {
      if (spec.network.type === "vnic") {
        throw new HypervisorError(
          "hypervisor::unsupported",
          "vnic networking exists only on illumos",
        );
      }
      if (p.qmp.length > SOCKET_PATH_MAX || p.console.length > SOCKET_PATH_MAX) {
        throw new HypervisorError(
          "hypervisor::invalid-path",
          `work dir ${p.dir} is too long for unix sockets`,
          {
            hint: "Use a shorter dataDir (unix socket paths are limited to 107 bytes).",
          },
        );
      }
      if (spec.uefi && (!existsSync(this.#o.ovmfCode) || !existsSync(this.#o.ovmfVars))) {
        throw new HypervisorError(
          "qemu::uefi-unavailable",
          `OVMF firmware not found (${this.#o.ovmfCode})`,
          {
            hint: "Install the ovmf package or set ovmfCode/ovmfVars.",
          },
        );
      }
      const base = await resolveImagePath(spec.imagePath, this.#o.imageRoots);
      checkAborted(opts.signal, "qemu prepare");
      await mkdir(this.#o.dataDir, { recursive: true });
      try {
        await mkdir(p.dir, { mode: 0o700 });
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === "EEXIST") {
          throw new HypervisorError("hypervisor::invalid-state", `qemu VM ${vmId} already exists`);
        }
        throw e;
      }
      try {
        await createOverlay(this.#o.qemuImgBinary, base, p.overlay, spec.diskGb, opts.signal);
        checkAborted(opts.signal, "qemu prepare");
        if (spec.cloudInit) {
          await createSeedIso(
            this.#o.isoTool,
            p.dir,
            p.seed,
            spec.cloudInit,
            vmId,
            spec.name,
            opts.signal,
          );
          checkAborted(opts.signal, "qemu prepare");
        }
        if (spec.uefi) await copyFile(this.#o.ovmfVars, p.vars);
        const handle: VmHandle = {
          id: vmId,
          name: spec.name,
          backend: "qemu",
          workDir: p.dir,
          overlayPath: p.overlay,
          ...(spec.cloudInit ? { seedIsoPath: p.seed } : {}),
          qmpSocket: p.qmp,
          consoleSocket: p.console,
          vcpus: spec.vcpus,
          memoryMb: spec.memoryMb,
          ...(spec.diskGb === undefined ? {} : { diskGb: spec.diskGb }),
          network: spec.network,
          ...(spec.network.type === "user" ? { sshHostPort: await freePort(vmId) } : {}),
          ...(spec.network.type === "none" ? {} : { macAddr: macFor(vmId) }),
          uefi: spec.uefi,
          accelerator: this.accelerator,
        };
        await this.#record(handle);
        checkAborted(opts.signal, "qemu prepare");
        this.#log?.info({ vmId, image: base, workDir: p.dir }, "qemu: prepared");
        return handle;
      } catch (e) {
        // Nothing left behind: the work dir is ours alone (created above, EEXIST refused).
        await rm(p.dir, { recursive: true, force: true });
        releasePort(vmId);
        throw e;
      }
    });
  }

  async start(vm: VmHandle, opts: CallOptions = {}): Promise<VmHandle> {
    checkAborted(opts.signal, "qemu start");
    const p = this.#paths(vm.id);
    return this.#locked(vm.id, async () => {
      if (!existsSync(p.dir)) throw notFound(vm.id);
      const live = await this.#livePid(vm.id);
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
      for (const f of [p.qmp, p.console, p.pid]) await rm(f, { force: true });
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
        uefi: handle.uefi ? { code: this.#o.ovmfCode, vars: p.vars } : undefined,
        vnc: this.#o.vnc,
      });
      checkAborted(opts.signal, "qemu start");
      const r = await execa(this.#o.qemuBinary, args, {
        reject: false,
        timeout: this.#o.startTimeoutMs,
        stdin: "ignore",
        cwd: p.dir,
      });
      if (r.exitCode !== 0) {
        await this.#killStray(p);
        const enoent = (r.cause as NodeJS.ErrnoException | undefined)?.code === "ENOENT";
        const why = enoent
          ? `${this.#o.qemuBinary} not found`
          : (r.stderr || (r.message ?? "")).trim().split("\n").slice(0, 3).join(" | ");
        throw new HypervisorError("qemu::spawn-failed", `QEMU did not start: ${why}`, {
          hint: "Install qemu-system-x86 (and check /dev/kvm access when using KVM); see console.log in the work dir.",
        });
      }
      const pid = await readPidFile(p.pid);
      if (pid === undefined || !(await isOurQemu(pid, p.qmp))) {
        throw new HypervisorError("qemu::spawn-failed", "QEMU exited right after starting", {
          hint: "See console.log in the work dir; check the image boots.",
        });
      }
      handle = { ...handle, pid, accelerator: this.accelerator };
      try {
        const m = await this.#attach(handle, pid, this.#o.startTimeoutMs);
        m.ownCalls++;
        try {
          const st = await m.client.execute<{ status?: string }>("query-status");
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
        } finally {
          m.ownCalls--;
        }
        m.handle = handle;
        checkAborted(opts.signal, "qemu start");
      } catch (e) {
        // A start that fails (or is cancelled) after spawning leaves no QEMU behind.
        await this.#killStray(p);
        this.#drop(vm.id);
        throw e;
      }
      await writeFile(p.started, new Date().toISOString());
      await this.#record(handle);
      this.#log?.info({ vmId: vm.id, pid, accelerator: this.accelerator }, "qemu: started");
      return handle;
    });
  }

  async stop(vm: VmHandle, opts: StopOptions): Promise<StopResult> {
    checkAborted(opts.signal, "qemu stop");
    return this.#locked(vm.id, () => this.#stop(vm, opts));
  }

  async #stop(vm: VmHandle, opts: StopOptions): Promise<StopResult> {
    const p = this.#paths(vm.id);
    if (!existsSync(p.dir)) throw notFound(vm.id);
    const pid = await this.#livePid(vm.id);
    if (pid === undefined) {
      throw new HypervisorError("hypervisor::invalid-state", `qemu VM ${vm.id} is not running`);
    }
    const m = await this.#monitor(vm.id, pid).catch(() => undefined);
    if (m) m.ownCalls++;
    // Waiting for the exit ends early on any QMP event, a socket drop, or cancellation.
    const wake = (resolve: () => void): (() => void) => {
      m?.wakers.add(resolve);
      opts.signal?.addEventListener("abort", resolve, { once: true });
      return () => {
        m?.wakers.delete(resolve);
        opts.signal?.removeEventListener("abort", resolve);
      };
    };
    const gone = async (ms: number): Promise<boolean> => {
      const ended = await waitForExit(pid, p.qmp, ms, wake, opts.signal);
      checkAborted(opts.signal, "qemu stop");
      return ended;
    };
    let how: StopResult["how"];
    try {
      if (opts.force === "now") {
        if (m) m.expectExit = true;
        // quit lets QEMU close its images cleanly; SIGKILL if it does not answer at once.
        await m?.client.execute("quit", undefined, { timeoutMs: 1000 }).catch(() => undefined);
        if (!(await gone(1000))) {
          await signalOurQemu(pid, p.qmp, "SIGKILL");
          await gone(5000);
        }
        how = "forced";
      } else {
        how = await this.#gracefulStop(vm.id, pid, p.qmp, m, opts, gone);
      }
    } finally {
      if (m) m.ownCalls--;
    }
    this.#drop(vm.id);
    const handle = withoutRuntime({ ...vm, workDir: p.dir });
    await this.#record(handle);
    this.#log?.info({ vmId: vm.id, how }, "qemu: stopped");
    return { handle, how };
  }

  async #gracefulStop(
    vmId: string,
    pid: number,
    qmp: string,
    m: Monitor | undefined,
    opts: StopOptions,
    gone: (ms: number) => Promise<boolean>,
  ): Promise<StopResult["how"]> {
    const deadline = Date.now() + opts.timeoutMs;
    if (m) {
      m.expectExit = true;
      // A paused guest cannot see the power button: let it run first.
      const st = await m.client.execute<{ status?: string }>("query-status").catch(() => undefined);
      if (st?.status === "paused") await m.client.execute("cont").catch(() => undefined);
      if (st?.status === "suspended")
        await m.client.execute("system_wakeup").catch(() => undefined);
    }
    for (;;) {
      // Pressed again each round: a guest still booting misses an early press.
      await m?.client.execute("system_powerdown").catch(() => undefined);
      const left = deadline - Date.now();
      if (await gone(Math.max(0, Math.min(left, this.#o.powerdownRetryMs)))) return "acpi";
      if (Date.now() >= deadline) break;
    }
    if (opts.force === "never") {
      if (m) m.expectExit = false;
      throw new HypervisorError(
        "hypervisor::stop-timeout",
        `qemu VM ${vmId} did not power off within ${opts.timeoutMs} ms`,
        {
          details: { vmId },
        },
      );
    }
    this.#log?.warn({ vmId, timeoutMs: opts.timeoutMs }, "qemu: guest ignored power-off; SIGTERM");
    await signalOurQemu(pid, qmp, "SIGTERM");
    if (await gone(this.#o.killGraceMs)) return "sigterm";
    this.#log?.warn({ vmId }, "qemu: QEMU ignored SIGTERM; SIGKILL");
    await signalOurQemu(pid, qmp, "SIGKILL");
    if (await gone(5000)) return "sigkill";
    throw new HypervisorError(
      "hypervisor::failed",
      `qemu VM ${vmId} (pid ${pid}) survived SIGKILL`,
    );
  }

  async suspend(vm: VmHandle, opts: CallOptions = {}): Promise<VmHandle> {
    return this.#pauseOrCont(vm, opts, "suspend");
  }

  async resume(vm: VmHandle, opts: CallOptions = {}): Promise<VmHandle> {
    return this.#pauseOrCont(vm, opts, "resume");
  }

  async #pauseOrCont(vm: VmHandle, opts: CallOptions, op: "suspend" | "resume"): Promise<VmHandle> {
    checkAborted(opts.signal, `qemu ${op}`);
    return this.#locked(vm.id, async () => {
      if (!existsSync(this.#paths(vm.id).dir)) throw notFound(vm.id);
      const pid = await this.#livePid(vm.id);
      if (pid === undefined) {
        throw new HypervisorError(
          "hypervisor::invalid-state",
          `cannot ${op} qemu VM ${vm.id}: it is not running`,
        );
      }
      const m = await this.#monitor(vm.id, pid);
      m.ownCalls++;
      try {
        const st = await m.client.execute<{ status?: string }>(
          "query-status",
          undefined,
          opts.signal ? { signal: opts.signal } : {},
        );
        const state = mapRunState(st.status);
        if (op === "suspend") {
          if (state !== "running") throw invalidState(vm.id, op, state);
          await m.client.execute("stop");
        } else {
          if (state !== "suspended") throw invalidState(vm.id, op, state);
          await m.client.execute(st.status === "suspended" ? "system_wakeup" : "cont");
        }
      } finally {
        m.ownCalls--;
      }
      return { ...vm, pid };
    });
  }

  async destroy(vm: VmHandle, opts: StopOptions): Promise<void> {
    checkAborted(opts.signal, "qemu destroy");
    const p = this.#paths(vm.id);
    await this.#locked(vm.id, async () => {
      if (!existsSync(p.dir)) {
        releasePort(vm.id); // gone already (destroyed by an earlier try): its port too
        return;
      }
      if ((await this.#livePid(vm.id)) !== undefined) {
        try {
          await this.#stop(vm, opts);
        } catch (e) {
          // Gone in between is fine; anything else (stop-timeout with force never) keeps it.
          if (!isVmqError(e, "hypervisor::invalid-state")) throw e;
        }
      }
      this.#drop(vm.id);
      await rm(p.dir, { recursive: true, force: true });
      releasePort(vm.id);
      this.#log?.info({ vmId: vm.id }, "qemu: destroyed");
    });
  }

  async state(vm: VmHandle, opts: CallOptions = {}): Promise<VmState> {
    checkAborted(opts.signal, "qemu state");
    const p = this.#paths(vm.id);
    if (!existsSync(p.dir)) return "destroyed";
    const pid = await this.#livePid(vm.id);
    if (pid === undefined) return existsSync(p.started) ? "stopped" : "prepared";
    try {
      const m = await this.#monitor(vm.id, pid);
      const st = await m.client.execute<{ status?: string }>("query-status", undefined, {
        timeoutMs: 5000,
        ...(opts.signal ? { signal: opts.signal } : {}),
      });
      return mapRunState(st.status);
    } catch (e) {
      // Alive but QMP unreachable (busy with another client, hung): we cannot tell.
      if (isVmqError(e, "hypervisor::aborted")) throw e;
      if ((await this.#livePid(vm.id)) === undefined) return "stopped";
      return "unknown";
    }
  }

  async guestIp(vm: VmHandle, opts: CallOptions = {}): Promise<string> {
    checkAborted(opts.signal, "qemu guestIp");
    if (!existsSync(this.#paths(vm.id).dir)) throw notFound(vm.id);
    if ((await this.#livePid(vm.id)) === undefined) {
      throw new HypervisorError(
        "hypervisor::invalid-state",
        `qemu VM ${vm.id} is not running; it has no address`,
      );
    }
    const net = vm.network;
    if (net.type === "user") return "127.0.0.1"; // SSH through sshHostPort
    if (net.type !== "tap" || !vm.macAddr) {
      throw new HypervisorError(
        "hypervisor::unsupported",
        `qemu VM ${vm.id} has no network address (${net.type})`,
      );
    }
    const deadline = Date.now() + this.#o.ipTimeoutMs;
    for (;;) {
      const ip = await lookupTapIp(net.bridge, vm.macAddr);
      if (ip) return ip;
      if (Date.now() >= deadline) {
        throw new HypervisorError(
          "network::ip-discovery-timeout",
          `no address for ${vm.macAddr} on ${net.bridge}`,
          {
            hint: "Check the guest got a DHCP lease on the bridge (dnsmasq) and is up.",
          },
        );
      }
      try {
        await sleep(1000, opts.signal);
      } catch (e) {
        throw new HypervisorError("hypervisor::aborted", "qemu guestIp was cancelled", {
          cause: e,
        });
      }
    }
  }

  consoleEndpoint(vm: VmHandle): ConsoleEndpoint {
    return { type: "unix-socket", path: this.#paths(vm.id).console };
  }

  /** Finds a QEMU that outlived a worker again (pid file + /proc identity) and watches it. */
  async adopt(vm: VmHandle, opts: CallOptions = {}): Promise<void> {
    checkAborted(opts.signal, "qemu adopt");
    const p = this.#paths(vm.id);
    if (!existsSync(p.dir)) return;
    const pid = await this.#livePid(vm.id);
    if (pid === undefined) return;
    const m = await this.#monitor(vm.id, pid);
    m.handle = { ...vm, pid, workDir: p.dir, qmpSocket: p.qmp, consoleSocket: p.console };
    this.#log?.info({ vmId: vm.id, pid }, "qemu: adopted a running VM");
  }

  watch(listener: ChangeListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Closes QMP connections; guests keep running (adopt finds them again). */
  async close(): Promise<void> {
    this.#closed = true;
    await Promise.allSettled([...this.#connecting.values()]);
    for (const id of [...this.#monitors.keys()]) this.#drop(id);
  }

  // ---- internals -------------------------------------------------------------------------

  /** Our QEMU's pid when it is alive (pid file + /proc proof), else undefined. */
  async #livePid(vmId: string): Promise<number | undefined> {
    const p = this.#paths(vmId);
    const pid = await readPidFile(p.pid);
    if (pid === undefined) return undefined;
    return (await isOurQemu(pid, p.qmp)) ? pid : undefined;
  }

  async #killStray(p: VmPaths): Promise<void> {
    const pid = await readPidFile(p.pid);
    if (pid !== undefined && (await signalOurQemu(pid, p.qmp, "SIGKILL"))) {
      await waitForExit(pid, p.qmp, 5000);
    }
  }

  async #monitor(vmId: string, pid: number): Promise<Monitor> {
    const m = this.#monitors.get(vmId);
    if (m && m.pid === pid && m.client.connected) return m;
    const handle = m?.handle ?? (await this.#readRecord(vmId));
    // A live QEMU answers at once; a held or hung socket should not stall state() for long.
    return this.#attach(handle, pid, Math.min(5000, this.#o.qmpTimeoutMs));
  }

  /** One QMP connection per VM, shared by calls; events feed watch(). */
  async #attach(handle: VmHandle, pid: number, budgetMs: number): Promise<Monitor> {
    if (this.#closed)
      throw new HypervisorError("hypervisor::unreachable", "the qemu backend is closed");
    const vmId = handle.id;
    const pending = this.#connecting.get(vmId);
    if (pending) {
      const m = await pending;
      if (m) return m;
    }
    const qmp = this.#paths(vmId).qmp;
    const attempt = (async (): Promise<Monitor | undefined> => {
      this.#drop(vmId);
      const client = await connectWithRetry(qmp, pid, budgetMs, this.#o.qmpTimeoutMs);
      const m: Monitor = {
        vmId,
        pid,
        qmpSocket: qmp,
        client,
        handle,
        ownCalls: 0,
        expectExit: false,
        wakers: new Set(),
      };
      client.onEvent((ev) => this.#onEvent(m, ev));
      client.onDisconnect(() => wakeAll(m));
      client.onClose(() => void this.#onClosed(m));
      this.#monitors.set(vmId, m);
      return m;
    })();
    this.#connecting.set(vmId, attempt);
    try {
      const m = await attempt;
      if (!m) throw new HypervisorError("qemu::qmp-connect-failed", `no QMP connection to ${vmId}`);
      return m;
    } finally {
      this.#connecting.delete(vmId);
    }
  }

  #drop(vmId: string): void {
    const m = this.#monitors.get(vmId);
    if (!m) return;
    this.#monitors.delete(vmId);
    m.client.close();
    wakeAll(m);
  }

  #onEvent(m: Monitor, ev: QmpEvent): void {
    wakeAll(m);
    if (this.#monitors.get(m.vmId) !== m) return;
    this.#log?.debug({ vmId: m.vmId, event: ev.event }, "qemu: QMP event");
    if (ev.event === "SHUTDOWN") {
      const reason = typeof ev.data?.reason === "string" ? ev.data.reason : "unknown";
      m.lastShutdown = { reason, guest: ev.data?.guest === true };
      return; // reported once the process is gone (#onClosed)
    }
    if (m.ownCalls > 0 || m.expectExit) return;
    // A guest power-off ends with SHUTDOWN, then STOP as QEMU halts the vCPUs on its way out:
    // that STOP is the exit, reported by #onClosed, not a pause.
    if (m.lastShutdown) return;
    if (ev.event === "STOP") this.#emit(m, "suspended", "qmp", "paused outside vmq");
    else if (ev.event === "RESUME") this.#emit(m, "running", "qmp", "resumed outside vmq");
    else if (ev.event === "GUEST_PANICKED") this.#emit(m, "failed", "qmp", "the guest panicked");
  }

  /** The QMP client gave up: the process is gone (or unreachable for good). */
  async #onClosed(m: Monitor): Promise<void> {
    wakeAll(m);
    if (this.#monitors.get(m.vmId) !== m) return; // we closed it ourselves
    this.#monitors.delete(m.vmId);
    if (m.expectExit || this.#closed) return;
    if (await isOurQemu(m.pid, m.qmpSocket)) {
      this.#emit(
        m,
        "unknown",
        "qmp",
        "the QMP connection was lost and could not be re-established",
      );
      return;
    }
    const s = m.lastShutdown;
    const handle = withoutRuntime(m.handle);
    await this.#record(handle).catch(() => undefined);
    if (s) {
      const guest = s.reason === "guest-shutdown";
      this.#emit({ ...m, handle }, "stopped", "qmp", `QEMU shut down (${s.reason})`, guest);
    } else {
      this.#emit({ ...m, handle }, "stopped", "process", "the QEMU process ended unexpectedly");
    }
  }

  #emit(
    m: Monitor,
    state: VmState,
    source: ObservedChange["source"],
    detail: string,
    guestInitiated?: boolean,
  ): void {
    const change: ObservedChange = {
      vmId: m.vmId,
      backend: "qemu",
      state,
      source,
      detail,
      handle: m.handle,
      ...(guestInitiated === undefined ? {} : { guestInitiated }),
    };
    this.#log?.info({ vmId: m.vmId, state, source, detail }, "qemu: observed change");
    for (const l of this.#listeners) {
      try {
        l(change);
      } catch (e) {
        this.#log?.error({ err: e }, "qemu: change listener threw");
      }
    }
  }

  /** vm.json: the handle, for adoption by a restarted worker (whole file, then rename). */
  async #record(handle: VmHandle): Promise<void> {
    const { record } = this.#paths(handle.id);
    await writeFile(`${record}.tmp`, `${JSON.stringify(handle, null, 2)}\n`, { mode: 0o600 });
    await rename(`${record}.tmp`, record);
  }

  /** vm.json, the handle prepare wrote last (after every other step succeeded). */
  async recorded(vmId: string, opts: CallOptions = {}): Promise<VmHandle | undefined> {
    checkAborted(opts.signal, `qemu record of ${vmId}`);
    const parsed = VmHandle.safeParse(await this.#readRecord(vmId).catch(() => undefined));
    return parsed.success && parsed.data.id === vmId ? parsed.data : undefined;
  }

  async #readRecord(vmId: string): Promise<VmHandle> {
    const { record } = this.#paths(vmId);
    return JSON.parse(await readFile(record, "utf8")) as VmHandle;
  }

  /** Calls on one VM run one at a time (state() does not queue). */
  async #locked<T>(vmId: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.#locks.get(vmId) ?? Promise.resolve();
    const run = prev.catch(() => undefined).then(fn);
    this.#locks.set(vmId, run);
    try {
      return await run;
    } finally {
      if (this.#locks.get(vmId) === run) this.#locks.delete(vmId);
    }
  }
}

export interface VmPaths {
  dir: string;
  overlay: string;
  seed: string;
  qmp: string;
  console: string;
  consoleLog: string;
  pid: string;
  vars: string;
  started: string;
  record: string;
}

/** Every path of a VM, from dataDir and the vmId alone (never from a handle's fields). */
export function vmPaths(dataDir: string, vmId: string): VmPaths {
  const dir = workDirFor(dataDir, vmId);
  return {
    dir,
    overlay: join(dir, "overlay.qcow2"),
    seed: join(dir, "seed.iso"),
    qmp: join(dir, "qmp.sock"),
    console: join(dir, "console.sock"),
    consoleLog: join(dir, "console.log"),
    pid: join(dir, "qemu.pid"),
    vars: join(dir, "OVMF_VARS.fd"),
    started: join(dir, "started"),
    record: join(dir, "vm.json"),
  };
}

async function connectWithRetry(
  path: string,
  pid: number,
  totalMs: number,
  commandTimeoutMs: number,
): Promise<QmpClient> {
  const deadline = Date.now() + totalMs;
  let last: unknown;
  for (let i = 1; Date.now() < deadline; i++) {
    try {
      return await QmpClient.connect(path, {
        connectTimeoutMs: Math.max(500, Math.min(5000, deadline - Date.now())),
        commandTimeoutMs,
        shouldReconnect: () => isOurQemu(pid, path),
      });
    } catch (e) {
      last = e;
      if (!(await isOurQemu(pid, path))) break;
      await sleep(Math.min(50 * i, 500));
    }
  }
  throw new HypervisorError("qemu::qmp-connect-failed", `cannot reach QMP at ${path}`, {
    hint: "QEMU may have died before its socket was ready, or another client holds the QMP socket.",
    cause: last,
  });
}

function wakeAll(m: Monitor): void {
  for (const w of [...m.wakers]) w();
}

function withoutRuntime(h: VmHandle): VmHandle {
  const { pid: _pid, vncAddr: _vnc, ...rest } = h;
  return rest;
}

function notFound(vmId: string): HypervisorError {
  return new HypervisorError("hypervisor::not-found", `qemu VM ${vmId} does not exist`);
}

function invalidState(vmId: string, op: string, state: VmState): HypervisorError {
  return new HypervisorError(
    "hypervisor::invalid-state",
    `cannot ${op} qemu VM ${vmId} in state ${state}`,
  );
}
