/**
 * The Propolis backend (illumos): one zone per VM whose boot runs one propolis-server, reached
 * at an address allocated per VM. Lifecycle decisions are taken from Propolis's own state
 * (GET /instance and the state monitor), the zone's state only when the server cannot exist.
 *
 * Stop outcomes ("how"), honestly: Propolis Stop is a hard halt inside the VMM, not an ACPI
 * power button, so by default a completed API Stop is recorded as `sigterm` (an orderly request
 * to the VMM, not to the guest), a `zoneadm halt` after the timeout as `sigkill`, and
 * `force: "now"` (zone halt at once) as `forced`. `orderlyStopHow` can override the first.
 */
import { mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { ID_PATTERN } from "../../../contracts/ids.js";
import type {
  Capabilities,
  ConsoleEndpoint,
  StopHow,
  VmHandle,
  VmSpec,
  VmState,
} from "../../../contracts/index.js";
import { isVmqError, VmqError } from "../../../lib/errors.js";
import { backoffMs, sleep } from "../../../lib/time.js";
import { checkAborted, HypervisorError } from "../../errors.js";
import type {
  CallOptions,
  ChangeListener,
  Hypervisor,
  ObservedChange,
  StopOptions,
  StopResult,
} from "../../hypervisor.js";
import { CommandRunner, type CommandRunnerOptions } from "./command-runner.js";
import {
  checkDataset,
  checkSafeValue,
  checkSnapshot,
  checkZoneName,
  datasetExists,
  pickGuestIp,
  zonecfgScript,
  zoneState,
} from "./illumos.js";
import type { InstanceState } from "./propolis-api.js";
import { parseAddr, PropolisClient } from "./propolis-client.js";
import { serialUrl } from "./propolis-serial.js";
import { buildEnsureRequest } from "./propolis-spec.js";
import { PropolisStateMonitor, type MonitorUpdate } from "./propolis-state-monitor.js";

export interface PropolisBackendOptions {
  /** A ready runner, or options to build one (binary paths, binDir, env, timeout). */
  runner?: CommandRunner;
  runnerOptions?: CommandRunnerOptions;
  /** Parent dataset of the VM disks: <vmsDataset>/<vmId>. Default rpool/vms. */
  vmsDataset?: string;
  /** Where a bare image name (spec.imagePath without "/") lives. Default rpool/images. */
  imagesDataset?: string;
  /** Snapshot cloned when spec.imagePath names no "@snap". Default latest. */
  imageSnapshot?: string;
  /** Zone paths are <zonesRoot>/<zone>. Default /zones. */
  zonesRoot?: string;
  /** Zone name = <zonePrefix><vmId> (hashed when too long). Default vmq-. */
  zonePrefix?: string;
  /** Zone brand whose boot runs propolis-server. Default nebula-vm. */
  zoneBrand?: string;
  /** Per-VM work dirs (cloud-init seed, zonecfg file): <workRoot>/<vmId>. */
  workRoot?: string;
  /** host:port of a VM's propolis-server; default: listenHost from basePort upward. */
  allocateAddress?: (vmId: string) => string | Promise<string>;
  listenHost?: string;
  basePort?: number;
  /** Bootrom handed to propolis-server through a zone attribute. */
  bootromPath?: string;
  /** The pinned propolis-server API version. Default 5.0.0. */
  apiVersion?: string;
  /** How long a booted zone's server may take to answer. Default 30 s. */
  readyTimeoutMs?: number;
  /** How long Run may take to reach Running. Default 120 s. */
  startTimeoutMs?: number;
  /** How long a Stopped instance may take to be Destroyed before re-ensure. Default 15 s. */
  rundownTimeoutMs?: number;
  /** `how` of a completed API Stop. Default sigterm (see the module comment). */
  orderlyStopHow?: StopHow;
  /** Label used for the metadata filler of the ensure request (e.g. the host id). */
  hostLabel?: string;
  monitorBackoffBaseMs?: number;
  monitorBackoffCapMs?: number;
  /** Unexpected background errors (monitor); default: ignored. */
  onError?: (e: unknown, vmId: string) => void;
}

interface PropolisVm {
  handle: VmHandle;
  client: PropolisClient;
  monitor: PropolisStateMonitor;
  everStarted: boolean;
  /** Flags of the current generation sequence (reset on every ensure/restart). */
  epoch: number;
  stopRequested: boolean;
  starting: boolean;
  haltSeen: boolean;
  guestHalt: boolean;
  haltReported: boolean;
}

/** States in which the VMM exists and has not begun to halt. */
const ACTIVE: ReadonlySet<InstanceState> = new Set([
  "Starting",
  "Running",
  "Rebooting",
  "Migrating",
]);
const HALTING: ReadonlySet<InstanceState> = new Set(["Stopping", "Stopped", "Destroyed"]);

/**
 * Every Propolis state, explicitly. Stopping reads as running: the VM is not stopped until
 * Propolis proves it (a stop that never completes must not look done).
 */
export function mapInstanceState(s: InstanceState): VmState {
  switch (s) {
    case "Creating":
    case "Starting":
      return "prepared";
    case "Running":
    case "Rebooting":
    case "Stopping":
      return "running";
    case "Stopped":
    case "Destroyed":
      return "stopped";
    case "Failed":
    case "Repairing":
      return "failed";
    case "Migrating":
      return "unknown";
    default:
      return "unknown";
  }
}

const invalid = (msg: string) => new HypervisorError("hypervisor::invalid-state", msg);

export class PropolisBackend implements Hypervisor {
  readonly tag = "propolis" as const;
  readonly #runner: CommandRunner;
  readonly #opts: PropolisBackendOptions;
  readonly #vms = new Map<string, PropolisVm>();
  readonly #listeners = new Set<ChangeListener>();
  readonly #usedPorts = new Set<number>();
  readonly #vmsDataset: string;
  readonly #imagesDataset: string;

  constructor(opts: PropolisBackendOptions = {}) {
    this.#opts = opts;
    this.#runner = opts.runner ?? new CommandRunner(opts.runnerOptions);
    this.#vmsDataset = checkDataset(opts.vmsDataset ?? "rpool/vms", "VM parent dataset");
    this.#imagesDataset = checkDataset(opts.imagesDataset ?? "rpool/images", "image dataset");
    checkSafeValue(opts.zonesRoot ?? "/zones", "zonesRoot");
    checkSafeValue(opts.workRoot ?? "/var/lib/vmq/propolis", "workRoot");
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
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Stops every monitor loop; never touches a VM. */
  async close(): Promise<void> {
    await Promise.all([...this.#vms.values()].map((v) => v.monitor.stop()));
  }

  // ---- prepare ---------------------------------------------------------------------------

  async prepare(vmId: string, spec: VmSpec, opts: CallOptions = {}): Promise<VmHandle> {
    checkAborted(opts.signal, `prepare of ${vmId}`);
    const zone = this.#zoneName(vmId);
    if (this.#vms.has(vmId)) throw invalid(`propolis VM ${vmId} already exists`);
    const vnic = this.#vnicOf(spec);
    const image = this.#imageSnapshot(spec.imagePath);
    const dataset = `${this.#vmsDataset}/${vmId}`;
    const workDir = this.#workDir(vmId);
    const zonepath = `${this.#opts.zonesRoot ?? "/zones"}/${zone}`;
    const run = { signal: opts.signal } as const;

    // Never adopt or "continue" over leftovers: they belong to someone else or to a failed run.
    if ((await zoneState(this.#runner, zone, this.#sig(run))) !== "absent") {
      throw invalid(`zone ${zone} already exists; destroy ${vmId} first`);
    }
    if (await datasetExists(this.#runner, dataset, this.#sig(run))) {
      throw invalid(`dataset ${dataset} already exists; destroy ${vmId} first`);
    }
    const addr = await this.#allocate(vmId);

    const undo: { what: string; run: () => Promise<unknown> }[] = [];
    let step = "work dir";
    try {
      await mkdir(this.#opts.workRoot ?? "/var/lib/vmq/propolis", { recursive: true });
      await mkdir(workDir, { mode: 0o700 });
      undo.push({
        what: `work dir ${workDir}`,
        run: () => rm(workDir, { recursive: true, force: true }),
      });

      step = "zfs clone";
      checkAborted(opts.signal, `prepare of ${vmId}`);
      await this.#runner.run("zfs", ["clone", image, dataset], this.#sig(run));
      undo.push({
        what: `dataset ${dataset}`,
        run: () => this.#runner.run("zfs", ["destroy", "-r", dataset]),
      });

      let seedIsoPath: string | undefined;
      if (spec.cloudInit !== undefined || spec.ssh !== undefined) {
        step = "cloud-init seed";
        checkAborted(opts.signal, `prepare of ${vmId}`);
        seedIsoPath = await this.#writeSeed(vmId, spec, workDir, opts.signal);
      }

      step = "zonecfg";
      checkAborted(opts.signal, `prepare of ${vmId}`);
      const cfgFile = join(workDir, "zonecfg.cmd");
      const attrs: Record<string, string> = { "vmq-propolis-addr": addr, "vmq-vm-id": vmId };
      if (this.#opts.bootromPath !== undefined) attrs["vmq-bootrom"] = this.#opts.bootromPath;
      await writeFile(
        cfgFile,
        zonecfgScript({
          brand: this.#opts.zoneBrand ?? "nebula-vm",
          zonepath,
          ...(vnic === undefined ? {} : { vnic }),
          devices: [`/dev/zvol/rdsk/${dataset}`],
          mounts: seedIsoPath === undefined ? [] : [{ dir: "/vmq", special: workDir }],
          attrs,
        }),
        { mode: 0o600 },
      );
      await this.#runner.run("zonecfg", ["-z", zone, "-f", cfgFile], this.#sig(run));
      undo.push({
        what: `zone ${zone} (configured)`,
        run: () => this.#runner.run("zonecfg", ["-z", zone, "delete", "-F"]),
      });

      step = "zone install";
      checkAborted(opts.signal, `prepare of ${vmId}`);
      await this.#runner.run("zoneadm", ["-z", zone, "install"], this.#sig(run));
      undo.push({
        what: `zone ${zone} (installed)`,
        run: () => this.#runner.run("zoneadm", ["-z", zone, "uninstall", "-F"]),
      });
      checkAborted(opts.signal, `prepare of ${vmId}`);

      const handle: VmHandle = {
        id: vmId,
        name: spec.name,
        backend: "propolis",
        workDir,
        overlayPath: `/dev/zvol/rdsk/${dataset}`,
        ...(seedIsoPath === undefined ? {} : { seedIsoPath }),
        vcpus: spec.vcpus,
        memoryMb: spec.memoryMb,
        ...(spec.diskGb === undefined ? {} : { diskGb: spec.diskGb }),
        network: spec.network,
        uefi: spec.uefi,
        propolisAddr: addr,
        zoneName: zone,
      };
      this.#record(handle);
      return handle;
    } catch (e) {
      const left = await this.#compensate(undo);
      this.#releasePort(addr);
      throw this.#prepareError(e, vmId, step, left);
    }
  }

  async #writeSeed(vmId: string, spec: VmSpec, workDir: string, signal?: AbortSignal) {
    const ci = spec.cloudInit;
    const userData =
      ci?.userData ??
      (spec.ssh
        ? `#cloud-config\nusers:\n  - name: ${spec.ssh.user}\n    ssh_authorized_keys:\n      - ${JSON.stringify(spec.ssh.publicKey)}\n`
        : "#cloud-config\n");
    const metaData = `instance-id: ${ci?.instanceId ?? vmId}\nlocal-hostname: ${ci?.hostname ?? vmId}\n`;
    const ud = join(workDir, "user-data");
    const md = join(workDir, "meta-data");
    await writeFile(ud, userData, { mode: 0o600 });
    await writeFile(md, metaData, { mode: 0o600 });
    const iso = join(workDir, "seed.iso");
    await this.#runner.run(
      "mkisofs",
      ["-output", iso, "-volid", "cidata", "-joliet", "-rock", ud, md],
      this.#sig({ signal }),
    );
    // propolis-server sees the work dir through the read-only lofs mount at /vmq.
    return "/vmq/seed.iso";
  }

  /** Runs the undo steps in reverse; returns what could not be removed. */
  async #compensate(undo: { what: string; run: () => Promise<unknown> }[]): Promise<string[]> {
    const left: string[] = [];
    for (const u of [...undo].reverse()) {
      try {
        await u.run();
      } catch (e) {
        left.push(`${u.what}: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
    return left;
  }

  #prepareError(e: unknown, vmId: string, step: string, left: string[]): VmqError {
    const base = isVmqError(e)
      ? e
      : new HypervisorError("hypervisor::failed", `${step} failed: ${String(e)}`, { cause: e });
    const message =
      left.length === 0
        ? `prepare of ${vmId} failed at ${step}: ${base.message} (completed steps were undone)`
        : `prepare of ${vmId} failed at ${step}: ${base.message}; cleanup failed, left behind: ${left.join("; ")}`;
    return new VmqError(base.code, message, {
      // Exception to the table: what was left behind must be cleaned up before a retry.
      retryable: base.retryable && left.length === 0,
      cause: e,
      details: { ...base.details, failedStep: step, leftBehind: left },
    });
  }

  // ---- start -----------------------------------------------------------------------------

  async start(vm: VmHandle, opts: CallOptions = {}): Promise<VmHandle> {
    checkAborted(opts.signal, `start of ${vm.id}`);
    const rec = this.#get(vm);
    const zone = this.#zoneName(vm.id);
    const zs = await zoneState(this.#runner, zone, this.#sig(opts));
    if (zs === "absent")
      throw new HypervisorError("hypervisor::not-found", `zone ${zone} does not exist`);
    let bootedHere = false;
    if (zs === "installed" || zs === "ready") {
      await this.#runner.run("zoneadm", ["-z", zone, "boot"], this.#sig(opts));
      bootedHere = true;
    } else if (zs !== "running") {
      throw invalid(`cannot start ${vm.id}: zone ${zone} is ${zs}`);
    }
    try {
      let current = await this.#waitReady(rec, opts.signal);
      if (current !== undefined && (ACTIVE.has(current) || current === "Stopping")) {
        throw invalid(`cannot start ${vm.id}: it is ${current}`);
      }
      rec.monitor.start();
      if (current === "Stopped" || current === "Failed") {
        // The old VMM is still being torn down; a new ensure would get 409 until Destroyed.
        current = await this.#waitState(
          rec,
          (s) => s === "Destroyed",
          this.#opts.rundownTimeoutMs ?? 15_000,
          opts.signal,
        );
      }
      rec.starting = true;
      if (current !== "Creating") {
        await rec.client.ensure(this.#ensureBody(rec.handle), this.#sig(opts));
        this.#newEpoch(rec, rec.monitor.reset());
      }
      await this.#retryBusy(() => rec.client.requestState("Run", this.#sig(opts)), opts.signal);
      const end = await this.#waitState(
        rec,
        (s) => s === "Running" || s === "Failed" || s === "Destroyed",
        this.#opts.startTimeoutMs ?? 120_000,
        opts.signal,
      );
      if (end !== "Running") {
        throw new HypervisorError(
          "propolis::start-failed",
          `${vm.id} did not start: Propolis reports ${end}`,
        );
      }
      rec.everStarted = true;
      return rec.handle;
    } catch (e) {
      if (bootedHere) {
        // Leave the zone as we found it, so state() keeps telling the truth.
        await rec.monitor.stop();
        const halted = await this.#runner.run("zoneadm", ["-z", zone, "halt"]).then(
          () => undefined,
          (h: unknown) => h,
        );
        if (halted !== undefined && isVmqError(e)) {
          throw new HypervisorError(
            "propolis::start-failed",
            `${e.message}; zone ${zone} is still booted`,
            {
              cause: e,
              details: { ...e.details, leftBooted: zone },
            },
          );
        }
      }
      throw e;
    } finally {
      rec.starting = false;
    }
  }

  /** Waits until the server answers GET /instance; returns its state (undefined: no VM yet). */
  async #waitReady(rec: PropolisVm, signal?: AbortSignal): Promise<InstanceState | undefined> {
    const deadline = Date.now() + (this.#opts.readyTimeoutMs ?? 30_000);
    for (let attempt = 1; ; attempt++) {
      checkAborted(signal, `start of ${rec.handle.id}`);
      try {
        return (await rec.client.get(this.#sig({ signal }))).state;
      } catch (e) {
        if (isVmqError(e, "propolis::no-instance")) return undefined;
        if (!isVmqError(e, "propolis::unreachable") || Date.now() >= deadline) throw e;
      }
      await sleep(
        Math.min(backoffMs(attempt, 25, 500), Math.max(0, deadline - Date.now())),
        signal,
      ).catch(() => undefined);
    }
  }

  async #retryBusy(fn: () => Promise<void>, signal?: AbortSignal): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await fn();
      } catch (e) {
        if (!isVmqError(e, "propolis::busy") || attempt >= 20) throw e;
        await sleep(backoffMs(attempt, 50, 1_000), signal);
      }
    }
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

  // ---- stop ------------------------------------------------------------------------------

  async stop(vm: VmHandle, opts: StopOptions): Promise<StopResult> {
    checkAborted(opts.signal, `stop of ${vm.id}`);
    const rec = this.#get(vm);
    const zone = this.#zoneName(vm.id);
    const zs = await zoneState(this.#runner, zone, this.#sig(opts));
    if (zs === "absent")
      throw new HypervisorError("hypervisor::not-found", `zone ${zone} does not exist`);
    if (zs !== "running") throw invalid(`cannot stop ${vm.id}: its zone is ${zs} (not running)`);

    let current: InstanceState | undefined;
    try {
      current = (await rec.client.get(this.#sig(opts))).state;
    } catch (e) {
      if (isVmqError(e, "propolis::no-instance"))
        throw invalid(`cannot stop ${vm.id}: no VM is running`);
      // The zone runs but its server does not answer: only the zone can be stopped.
      if (!isVmqError(e, "propolis::unreachable") || opts.force === "never") throw e;
      return {
        handle: await this.#haltZone(rec, opts),
        how: opts.force === "now" ? "forced" : "sigkill",
      };
    }
    if (current === "Creating") throw invalid(`cannot stop ${vm.id}: it was never started`);
    if (current === "Stopped" || current === "Destroyed")
      throw invalid(`${vm.id} is already stopped`);

    rec.stopRequested = true;
    if (opts.force === "now") return { handle: await this.#haltZone(rec, opts), how: "forced" };

    rec.monitor.start();
    try {
      await rec.client.requestState("Stop", this.#sig(opts));
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
      return { handle: rec.handle, how: this.#opts.orderlyStopHow ?? "sigterm" };
    } catch (e) {
      if (!isVmqError(e, "propolis::timeout")) throw e;
      if (opts.force === "never") {
        throw new HypervisorError(
          "hypervisor::stop-timeout",
          `${vm.id} did not stop within ${opts.timeoutMs} ms (Propolis: ${rec.monitor.latest?.state ?? "unknown"})`,
          { cause: e },
        );
      }
      return { handle: await this.#haltZone(rec, opts), how: "sigkill" };
    }
  }

  /** Ends the VMM by halting its zone (the propolis-server process dies with it). */
  async #haltZone(rec: PropolisVm, opts: CallOptions): Promise<VmHandle> {
    await rec.monitor.stop();
    await this.#runner.run(
      "zoneadm",
      ["-z", this.#zoneName(rec.handle.id), "halt"],
      this.#sig(opts),
    );
    rec.everStarted = true;
    return rec.handle;
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

  // ---- destroy ---------------------------------------------------------------------------

  async destroy(vm: VmHandle, opts: StopOptions): Promise<void> {
    checkAborted(opts.signal, `destroy of ${vm.id}`);
    const zone = this.#zoneName(vm.id);
    const rec = this.#vms.get(vm.id) ?? this.#tryRecord(vm);
    let zs = await zoneState(this.#runner, zone, this.#sig(opts));
    if (zs === "running" || zs === "ready") {
      if (rec && zs === "running" && opts.force !== "now") {
        // Give Propolis its chance to stop the VMM first; the zone halt follows regardless.
        try {
          await this.stop(rec.handle, { ...opts, force: "never" });
        } catch (e) {
          if (!isVmqError(e) || e.code === "hypervisor::aborted") throw e;
        }
      }
      await rec?.monitor.stop();
      await this.#runner.run("zoneadm", ["-z", zone, "halt"], this.#sig(opts));
      zs = "installed";
    }
    await rec?.monitor.stop();
    if (zs !== "absent" && zs !== "configured") {
      await this.#runner.run("zoneadm", ["-z", zone, "uninstall", "-F"], this.#sig(opts));
    }
    if (zs !== "absent")
      await this.#runner.run("zonecfg", ["-z", zone, "delete", "-F"], this.#sig(opts));
    const dataset = `${this.#vmsDataset}/${vm.id}`;
    const z = await this.#runner.run("zfs", ["destroy", "-r", dataset], {
      ...this.#sig(opts),
      allowFailure: true,
    });
    if (z.exitCode !== 0 && !/does not exist/i.test(z.stderr)) {
      throw new HypervisorError(
        "image::zfs-failed",
        `zfs destroy -r ${dataset} failed: ${z.stderr.trim()}`,
        {
          details: { stderr: z.stderr, exitCode: z.exitCode },
        },
      );
    }
    await rm(this.#workDir(vm.id), { recursive: true, force: true });
    this.#vms.delete(vm.id);
    if (vm.propolisAddr !== undefined) this.#releasePort(vm.propolisAddr);
  }

  // ---- queries ---------------------------------------------------------------------------

  async state(vm: VmHandle, opts: CallOptions = {}): Promise<VmState> {
    checkAborted(opts.signal, `state of ${vm.id}`);
    if (!ID_PATTERN.test(vm.id)) return "unknown";
    const zs = await zoneState(this.#runner, this.#zoneName(vm.id), this.#sig(opts));
    if (zs === "absent") return "destroyed";
    const rec = this.#vms.get(vm.id) ?? this.#tryRecord(vm);
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
      return mapInstanceState((await rec.client.get(this.#sig(opts))).state);
    } catch (e) {
      if (isVmqError(e, "propolis::no-instance")) return idle;
      if (isVmqError(e, "hypervisor::aborted")) throw e;
      return "unknown";
    }
  }

  async guestIp(vm: VmHandle, opts: CallOptions = {}): Promise<string> {
    checkAborted(opts.signal, `guestIp of ${vm.id}`);
    const s = await this.state(vm, opts);
    if (s !== "running") throw invalid(`${vm.id} is ${s}; it has no address`);
    const r = await this.#runner.run(
      "zlogin",
      [this.#zoneName(vm.id), "ipadm", "show-addr", "-p", "-o", "ADDR"],
      this.#sig(opts),
    );
    const ip = pickGuestIp(r.stdout);
    if (ip === undefined) {
      throw new HypervisorError("network::no-address", `${vm.id} has no usable address yet`, {
        details: { output: r.stdout.slice(0, 500) },
      });
    }
    return ip;
  }

  /** The websocket needs the `api-version` header on the upgrade (see propolis-serial.ts). */
  consoleEndpoint(vm: VmHandle): ConsoleEndpoint {
    if (vm.propolisAddr === undefined) return { type: "none" };
    return { type: "websocket", url: serialUrl(vm.propolisAddr) };
  }

  /** Re-attaches the monitor to a VM found running after a worker restart. */
  async adopt(vm: VmHandle, opts: CallOptions = {}): Promise<void> {
    checkAborted(opts.signal, `adopt of ${vm.id}`);
    const rec = this.#get(vm);
    if ((await zoneState(this.#runner, this.#zoneName(vm.id), this.#sig(opts))) !== "running")
      return;
    try {
      const s = (await rec.client.get(this.#sig(opts))).state;
      if (s !== "Creating") rec.everStarted = true;
    } catch (e) {
      if (!isVmqError(e, "propolis::no-instance") && !isVmqError(e, "propolis::unreachable"))
        throw e;
    }
    rec.monitor.start();
  }

  // ---- internals -------------------------------------------------------------------------

  #sig(o: { signal?: AbortSignal | undefined }): { signal?: AbortSignal } {
    return o.signal ? { signal: o.signal } : {};
  }

  #zoneName(vmId: string): string {
    if (!ID_PATTERN.test(vmId)) {
      throw new HypervisorError("hypervisor::invalid-path", `bad vmId ${JSON.stringify(vmId)}`);
    }
    const prefix = this.#opts.zonePrefix ?? "vmq-";
    const name = `${prefix}${vmId}`;
    if (name.length <= 63) return checkZoneName(name);
    // Too long for a zone name: keep it unique with a hash of the full id.
    const h = [...vmId].reduce((a, c) => (a * 33 + c.charCodeAt(0)) >>> 0, 5381).toString(16);
    return checkZoneName(`${prefix}${vmId.slice(0, 63 - prefix.length - h.length - 1)}-${h}`);
  }

  #workDir(vmId: string): string {
    return join(this.#opts.workRoot ?? "/var/lib/vmq/propolis", vmId);
  }

  #vnicOf(spec: VmSpec): string | undefined {
    switch (spec.network.type) {
      case "none":
        return undefined;
      case "vnic":
        return checkSafeValue(spec.network.name, "vnic");
      default:
        throw new HypervisorError(
          "hypervisor::unsupported",
          `propolis VMs take network "vnic" or "none", not "${spec.network.type}"`,
        );
    }
  }

  #imageSnapshot(imagePath: string): string {
    const withDataset = imagePath.includes("/") ? imagePath : `${this.#imagesDataset}/${imagePath}`;
    const full = withDataset.includes("@")
      ? withDataset
      : `${withDataset}@${this.#opts.imageSnapshot ?? "latest"}`;
    return checkSnapshot(full);
  }

  async #allocate(vmId: string): Promise<string> {
    const addr = this.#opts.allocateAddress
      ? await this.#opts.allocateAddress(vmId)
      : this.#nextAddress();
    const { port } = parseAddr(addr);
    checkSafeValue(addr, "propolis address");
    this.#usedPorts.add(port);
    return addr;
  }

  #nextAddress(): string {
    const host = this.#opts.listenHost ?? "127.0.0.1";
    for (let p = this.#opts.basePort ?? 12400; p < 65536; p++) {
      if (!this.#usedPorts.has(p)) return host.includes(":") ? `[${host}]:${p}` : `${host}:${p}`;
    }
    throw new HypervisorError("hypervisor::failed", "no free propolis-server port left");
  }

  #releasePort(addr: string): void {
    try {
      this.#usedPorts.delete(parseAddr(addr).port);
    } catch {
      // an address we never parsed was never reserved
    }
  }

  #ensureBody(h: VmHandle) {
    const dataset = `${this.#vmsDataset}/${h.id}`;
    return buildEnsureRequest({
      vmId: h.id,
      name: h.name,
      vcpus: h.vcpus,
      memoryMb: h.memoryMb,
      diskPath: `/dev/zvol/rdsk/${dataset}`,
      ...(h.seedIsoPath === undefined ? {} : { seedIsoPath: h.seedIsoPath }),
      ...(h.network.type === "vnic" ? { vnic: h.network.name } : {}),
      ...(this.#opts.hostLabel === undefined ? {} : { hostLabel: this.#opts.hostLabel }),
    });
  }

  #get(vm: VmHandle): PropolisVm {
    const rec = this.#vms.get(vm.id) ?? this.#tryRecord(vm);
    if (!rec)
      throw new HypervisorError(
        "hypervisor::not-found",
        `propolis VM ${vm.id} has no server address`,
      );
    return rec;
  }

  #tryRecord(vm: VmHandle): PropolisVm | undefined {
    if (vm.backend !== "propolis" || vm.propolisAddr === undefined || !ID_PATTERN.test(vm.id))
      return undefined;
    return this.#record(vm);
  }

  #record(handle: VmHandle): PropolisVm {
    const client = new PropolisClient(handle.propolisAddr ?? "", {
      ...(this.#opts.apiVersion === undefined ? {} : { apiVersion: this.#opts.apiVersion }),
    });
    this.#usedPorts.add(parseAddr(client.addr).port);
    const rec: PropolisVm = {
      handle,
      client,
      monitor: new PropolisStateMonitor(client, {
        onUpdate: (u) => this.#onUpdate(rec, u),
        onError: (e) => this.#opts.onError?.(e, handle.id),
        ...(this.#opts.monitorBackoffBaseMs === undefined
          ? {}
          : { backoffBaseMs: this.#opts.monitorBackoffBaseMs }),
        ...(this.#opts.monitorBackoffCapMs === undefined
          ? {}
          : { backoffCapMs: this.#opts.monitorBackoffCapMs }),
      }),
      everStarted: false,
      epoch: -1,
      stopRequested: false,
      starting: false,
      haltSeen: false,
      guestHalt: false,
      haltReported: false,
    };
    this.#vms.set(handle.id, rec);
    return rec;
  }

  #newEpoch(rec: PropolisVm, epoch: number): void {
    rec.epoch = epoch;
    rec.stopRequested = false;
    rec.haltSeen = false;
    rec.guestHalt = false;
    rec.haltReported = false;
  }

  /** Turns monitor updates no call of ours explains into ObservedChanges. */
  #onUpdate(rec: PropolisVm, u: MonitorUpdate): void {
    // A sequence we did not start (server restarted under us): nothing of ours is pending.
    if (u.epoch !== rec.epoch) this.#newEpoch(rec, u.epoch);
    const emit = (state: VmState, detail: string, guestInitiated: boolean) => {
      const change: ObservedChange = {
        vmId: rec.handle.id,
        backend: "propolis",
        state,
        source: "propolis",
        guestInitiated,
        detail,
        handle: rec.handle,
      };
      for (const l of this.#listeners) l(change);
    };
    if (HALTING.has(u.state)) {
      if (!rec.haltSeen) {
        rec.haltSeen = true;
        // A halt we did not ask for, of a VM that had started: the guest powered off.
        rec.guestHalt = !rec.stopRequested && u.previous !== undefined && u.previous !== "Creating";
      }
      if (rec.guestHalt && u.state !== "Stopping" && !rec.haltReported) {
        rec.haltReported = true;
        rec.everStarted = true;
        emit("stopped", `the guest halted (Propolis ${u.state})`, true);
      }
      return;
    }
    if (u.state === "Rebooting" && u.previous !== "Rebooting") {
      emit("running", "the guest rebooted (Propolis Rebooting)", true);
    } else if (u.state === "Running" && u.previous === "Running") {
      emit("running", "the guest rebooted (intermediate states coalesced)", true);
    } else if (u.state === "Failed" && u.previous !== "Failed" && !rec.starting) {
      emit("failed", "Propolis reports the VM Failed", false);
    }
  }
}
