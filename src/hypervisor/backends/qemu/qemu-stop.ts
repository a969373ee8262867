/**
 * Stopping a QEMU, step by step: `force: now` quits (SIGKILL if QEMU does not answer); a
 * graceful stop presses the ACPI power button again every `powerdownRetryMs` (a guest still
 * booting misses an early press) until the timeout, then escalates to SIGTERM and SIGKILL
 * unless `force: never`. A suspended VM is continued first: a paused guest cannot see the
 * button. Every wait ends early on a QMP event, a socket drop, or cancellation. The worker's
 * stop plan (opts.escalation) bounds the escalation steps, so they fit before its deadline; a
 * failpoint at each step lets the fault tests kill the worker there.
 */
import type { VmHandle } from "../../../contracts/index.js";
import { failpoint } from "../../../lib/failpoints.js";
import { checkAborted, HypervisorError } from "../../errors.js";
import type { StopOptions, StopResult } from "../../hypervisor.js";
import { withoutRuntime } from "../shared/handle.js";
import { signalOurQemu, waitForExit } from "./process.js";
import { requireWorkDir, writeRecord, type VmPaths } from "./qemu-files.js";
import type { QemuLogger } from "./qemu-options.js";
import type { Monitor, QemuSupervisor } from "./qemu-supervisor.js";

export interface StopDeps {
  supervisor: QemuSupervisor;
  paths: VmPaths;
  powerdownRetryMs: number;
  killGraceMs: number;
  log: QemuLogger | undefined;
}

export async function stopQemu(d: StopDeps, vm: VmHandle, opts: StopOptions): Promise<StopResult> {
  const p = d.paths;
  requireWorkDir(p, vm.id);
  const pid = await d.supervisor.livePid(vm.id);
  if (pid === undefined) {
    throw new HypervisorError("hypervisor::invalid-state", `qemu VM ${vm.id} is not running`);
  }
  const m = await d.supervisor.monitor(vm.id, pid).catch(() => undefined);
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
  if (opts.force === "now") {
    // quit lets QEMU close its images cleanly; SIGKILL if it does not answer at once.
    await m?.client.execute("quit", undefined, { timeoutMs: 1000 }).catch(() => undefined);
    if (!(await gone(1000))) {
      await signalOurQemu(pid, p.qmp, "SIGKILL");
      await gone(5000);
    }
    how = "forced";
  } else {
    how = await gracefulStop(d, vm.id, pid, m, opts, gone);
  }
  d.supervisor.drop(vm.id);
  const handle = withoutRuntime({ ...vm, workDir: p.dir });
  await writeRecord(p, handle);
  d.log?.info({ vmId: vm.id, how }, "qemu: stopped");
  return { handle, how };
}

async function gracefulStop(
  d: StopDeps,
  vmId: string,
  pid: number,
  m: Monitor | undefined,
  opts: StopOptions,
  gone: (ms: number) => Promise<boolean>,
): Promise<StopResult["how"]> {
  const deadline = Date.now() + opts.timeoutMs;
  // The first press goes out together with the status query (one round trip, not two); a
  // paused guest cannot act on it, so it is continued and pressed again below.
  let pressed = false;
  if (m) {
    const [st] = await Promise.all([
      m.client.execute<{ status?: string }>("query-status").catch(() => undefined),
      m.client.execute("system_powerdown").catch(() => undefined),
    ]);
    pressed = st?.status === "running";
    if (st?.status === "paused") await m.client.execute("cont").catch(() => undefined);
    if (st?.status === "suspended") await m.client.execute("system_wakeup").catch(() => undefined);
  }
  for (;;) {
    if (!pressed) await m?.client.execute("system_powerdown").catch(() => undefined);
    pressed = false;
    failpoint("stop-graceful");
    const left = deadline - Date.now();
    if (await gone(Math.max(0, Math.min(left, d.powerdownRetryMs)))) return "acpi";
    if (Date.now() >= deadline) break;
  }
  if (opts.force === "never") {
    throw new HypervisorError(
      "hypervisor::stop-timeout",
      `qemu VM ${vmId} did not power off within ${opts.timeoutMs} ms`,
      { details: { vmId } },
    );
  }
  const qmp = d.paths.qmp;
  const steps = opts.escalation;
  const termGrace = Math.min(d.killGraceMs, steps?.sigtermGraceMs ?? Infinity);
  d.log?.warn({ vmId, timeoutMs: opts.timeoutMs }, "qemu: guest ignored power-off; SIGTERM");
  failpoint("stop-sigterm");
  await signalOurQemu(pid, qmp, "SIGTERM");
  if (await gone(termGrace)) return "sigterm";
  d.log?.warn({ vmId }, "qemu: QEMU ignored SIGTERM; SIGKILL");
  failpoint("stop-sigkill");
  await signalOurQemu(pid, qmp, "SIGKILL");
  if (await gone(steps?.sigkillWaitMs ?? 5000)) return "sigkill";
  throw new HypervisorError("hypervisor::failed", `qemu VM ${vmId} (pid ${pid}) survived SIGKILL`);
}
