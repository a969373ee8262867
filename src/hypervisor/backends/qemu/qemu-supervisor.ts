/**
 * Supervision of running QEMUs: pid identity, one QMP connection per VM (shared by calls), and
 * what QMP and the process tell that no call of ours explains, reported through watch.
 *
 * No `-no-shutdown`: when the guest powers off, QEMU exits. The SHUTDOWN event (with its
 * reason) arrives just before the QMP socket closes; the change is reported once the process
 * is gone.
 */
import type { VmHandle, VmState } from "../../../contracts/index.js";
import { retry } from "../../../lib/retry.js";
import { HypervisorError } from "../../errors.js";
import type { ObservedChange } from "../../hypervisor.js";
import type { ChangeEmitter } from "../shared/change-emitter.js";
import { withoutRuntime } from "../shared/handle.js";
import type { OwnCalls } from "../shared/own-calls.js";
import { isOurQemu, readPidFile, signalOurQemu, waitForExit } from "./process.js";
import { readRecord, vmPaths, writeRecord, type VmPaths } from "./qemu-files.js";
import type { QemuLogger } from "./qemu-options.js";
import { QmpClient, type QmpEvent } from "./qmp-client.js";

export interface Monitor {
  vmId: string;
  pid: number;
  qmpSocket: string;
  client: QmpClient;
  handle: VmHandle;
  lastShutdown?: { reason: string; guest: boolean } | undefined;
  /** Woken on every event and on disconnect (stop waits on these instead of polling). */
  wakers: Set<() => void>;
}

export interface SupervisorDeps {
  dataDir: string;
  qmpTimeoutMs: number;
  /** Whose changes are ours (the backend's calls): those are not reported. */
  own: OwnCalls;
  changes: ChangeEmitter;
  log: QemuLogger | undefined;
}

export class QemuSupervisor {
  readonly #d: SupervisorDeps;
  readonly #monitors = new Map<string, Monitor>();
  readonly #connecting = new Map<string, Promise<Monitor | undefined>>();
  #closed = false;

  constructor(deps: SupervisorDeps) {
    this.#d = deps;
  }

  #paths(vmId: string): VmPaths {
    return vmPaths(this.#d.dataDir, vmId);
  }

  /** Our QEMU's pid when it is alive (pid file + /proc proof), else undefined. */
  async livePid(vmId: string): Promise<number | undefined> {
    const p = this.#paths(vmId);
    const pid = await readPidFile(p.pid);
    if (pid === undefined) return undefined;
    return (await isOurQemu(pid, p.qmp)) ? pid : undefined;
  }

  /** Kills a QEMU left by a start that failed part-way. */
  async killStray(p: VmPaths): Promise<void> {
    const pid = await readPidFile(p.pid);
    if (pid !== undefined && (await signalOurQemu(pid, p.qmp, "SIGKILL"))) {
      await waitForExit(pid, p.qmp, 5000);
    }
  }

  /** The VM's QMP connection, opened again when it is missing or stale. */
  async monitor(vmId: string, pid: number): Promise<Monitor> {
    const m = this.#monitors.get(vmId);
    if (m && m.pid === pid && m.client.connected) return m;
    const handle = m?.handle ?? (await readRecord(this.#paths(vmId)));
    // A live QEMU answers at once; a held or hung socket should not stall state() for long.
    return this.attach(handle, pid, Math.min(5000, this.#d.qmpTimeoutMs));
  }

  /** One QMP connection per VM, shared by calls; its events feed watch(). */
  async attach(handle: VmHandle, pid: number, budgetMs: number): Promise<Monitor> {
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
      this.drop(vmId);
      const client = await connectWithRetry(qmp, pid, budgetMs, this.#d.qmpTimeoutMs);
      const m: Monitor = { vmId, pid, qmpSocket: qmp, client, handle, wakers: new Set() };
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

  /** Closes the VM's QMP connection ourselves (its close is then no observation). */
  drop(vmId: string): void {
    const m = this.#monitors.get(vmId);
    if (!m) return;
    this.#monitors.delete(vmId);
    m.client.close();
    wakeAll(m);
  }

  /** Closes every QMP connection; guests keep running (adopt finds them again). */
  async close(): Promise<void> {
    this.#closed = true;
    await Promise.allSettled([...this.#connecting.values()]);
    for (const id of [...this.#monitors.keys()]) this.drop(id);
  }

  #onEvent(m: Monitor, ev: QmpEvent): void {
    wakeAll(m);
    if (this.#monitors.get(m.vmId) !== m) return;
    this.#d.log?.debug({ vmId: m.vmId, event: ev.event }, "qemu: QMP event");
    if (ev.event === "SHUTDOWN") {
      const reason = typeof ev.data?.reason === "string" ? ev.data.reason : "unknown";
      m.lastShutdown = { reason, guest: ev.data?.guest === true };
      return; // reported once the process is gone (#onClosed)
    }
    if (this.#d.own.isOurs(m.vmId)) return;
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
    if (this.#d.own.isOurs(m.vmId) || this.#closed) return;
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
    await writeRecord(this.#paths(m.vmId), handle).catch(() => undefined);
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
    this.#d.log?.info({ vmId: m.vmId, state, source, detail }, "qemu: observed change");
    this.#d.changes.emit({
      vmId: m.vmId,
      backend: "qemu",
      state,
      source,
      detail,
      handle: m.handle,
      ...(guestInitiated === undefined ? {} : { guestInitiated }),
    });
  }
}

async function connectWithRetry(
  path: string,
  pid: number,
  totalMs: number,
  commandTimeoutMs: number,
): Promise<QmpClient> {
  const deadline = Date.now() + totalMs;
  let last: unknown;
  try {
    return await retry(
      () =>
        QmpClient.connect(path, {
          connectTimeoutMs: Math.max(500, Math.min(5000, deadline - Date.now())),
          commandTimeoutMs,
          shouldReconnect: () => isOurQemu(pid, path),
        }),
      {
        baseMs: 50,
        capMs: 500,
        timeoutMs: totalMs,
        // A QEMU that died will never open its socket: stop asking.
        retryIf: (e) => ((last = e), isOurQemu(pid, path)),
      },
    );
  } catch (e) {
    last ??= e;
  }
  throw new HypervisorError("qemu::qmp-connect-failed", `cannot reach QMP at ${path}`, {
    hint: "QEMU may have died before its socket was ready, or another client holds the QMP socket.",
    cause: last,
  });
}

export function wakeAll(m: Monitor): void {
  for (const w of [...m.wakers]) w();
}
