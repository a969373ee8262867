import { VmHandle, type CloudInit, type Command } from "../../contracts/index.js";
import { stopPlan, type CommandResult, type Vm } from "../../domain/index.js";
import { withheldSpec } from "../../lib/user-data.js";
import type { HostKey } from "../secrets/host-key.js";
import { VmqError } from "../../lib/errors.js";
import type { DiskSink } from "../images/disk-sink.js";
import type { CommandRouter, ImageSource } from "./pipeline-deps.js";

/** When this run of the command began and when its intent's deadline is (epoch ms). */
export interface RunTiming {
  now: number;
  deadline: number;
}

/**
 * The graceful window and escalation steps of this run of a stop or destroy: what is left of
 * them since the intent was recorded (a resumed command does not start its window again).
 */
export function stopTimes(
  command: Extract<Command, { type: "vm.stop" | "vm.destroy" }>,
  vm: Vm,
  t: RunTiming,
) {
  const since = vm.pending?.commandId === command.commandId ? Date.parse(vm.pending.since) : t.now;
  const plan = stopPlan({ acceptedAt: since, timeoutMs: command.timeoutMs, ...t });
  const { sigtermGraceMs, sigkillWaitMs } = plan;
  return { timeoutMs: plan.gracefulMs, escalation: { sigtermGraceMs, sigkillWaitMs } };
}

/** Runs the command's backend call under `signal` and returns what its outcome needs. */
export async function backendCall(
  router: CommandRouter,
  command: Command,
  vm: Vm,
  signal: AbortSignal,
  timing: RunTiming,
  hostKey: Pick<HostKey, "open">,
  images?: ImageSource,
  disks?: DiskSink,
): Promise<CommandResult> {
  const handle = vm.handle ?? stubHandle(vm, router.defaultBackend);
  switch (command.type) {
    case "vm.prepare": {
      const spec = { ...command.spec, backend: command.spec.backend ?? router.defaultBackend };
      // Opened here, for the backend's seed only; the outcome records the spec without it.
      const ci = spec.cloudInit;
      const sealed = ci?.sealedUserData;
      const given =
        ci && sealed
          ? { ...spec, cloudInit: { ...withoutSealed(ci), userData: hostKey.open(sealed) } }
          : spec;
      if (spec.image === undefined) {
        const handle = await router.prepare(command.vmId, given, { signal });
        return { handle, spec: withheldSpec(spec) };
      }
      // The backend gets the verified cached file as its imagePath; the VM records its digest.
      const image = await fetchImage(images, spec.image, spec.backend, command.vmId, signal);
      const { image: _ref, ...local } = given;
      const handle = await router.prepare(
        command.vmId,
        { ...local, imagePath: image.path },
        { signal },
      );
      return { handle: { ...handle, imageDigest: image.digest }, spec: withheldSpec(spec) };
    }
    case "vm.start":
      return { handle: await router.start(handle, { signal }) };
    case "vm.suspend":
      return { handle: await router.suspend(handle, { signal }) };
    case "vm.resume":
      return { handle: await router.resume(handle, { signal }) };
    case "vm.stop": {
      const r = await router.stop(handle, {
        ...stopTimes(command, vm, timing),
        force: command.force,
        signal,
      });
      return { handle: r.handle, how: r.how };
    }
    case "vm.destroy":
      await router.destroy(handle, {
        ...stopTimes(command, vm, timing),
        force: "after-timeout",
        signal,
      });
      await images?.unpin(command.vmId);
      return {};
    case "vm.export-disk": {
      if (!disks)
        throw new VmqError("move::export-unavailable", "this worker cannot send exported disks");
      const disk = await router.exportDisk(handle, { signal });
      try {
        return { disk: await disks.send(command.vmId, command.commandId, disk, signal) };
      } finally {
        await disk.release();
      }
    }
  }
}

function fetchImage(
  images: ImageSource | undefined,
  ref: string,
  backend: VmHandle["backend"],
  vmId: string,
  signal: AbortSignal,
): Promise<{ path: string; digest: string }> {
  if (backend === "propolis") {
    // Propolis clones ZFS snapshots from its image dataset, not files (docs/propolis.md).
    throw new VmqError("image::unsupported-backend", "propolis VMs take imagePath, not image");
  }
  if (!images) throw new VmqError("image::store-unavailable", "this worker has no image cache");
  return images.ensure(ref, vmId, signal);
}

/** A VM whose prepare never finished has no handle; the backend finds it by id. */
export function stubHandle(vm: Vm, defaultBackend: VmHandle["backend"]): VmHandle {
  return VmHandle.parse({
    id: vm.vmId,
    name: vm.spec?.name ?? vm.vmId,
    backend: vm.spec?.backend ?? defaultBackend,
    workDir: "",
  });
}

function withoutSealed(ci: CloudInit): CloudInit {
  const { sealedUserData: _sealed, ...rest } = ci;
  return rest;
}
