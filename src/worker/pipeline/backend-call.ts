import { VmHandle, type Command } from "../../contracts/index.js";
import type { CommandResult, Vm } from "../../domain/index.js";
import type { CommandRouter } from "./pipeline-deps.js";

/** Runs the command's backend call under `signal` and returns what its outcome needs. */
export async function backendCall(
  router: CommandRouter,
  command: Command,
  vm: Vm,
  signal: AbortSignal,
): Promise<CommandResult> {
  const handle = vm.handle ?? stubHandle(vm, router.defaultBackend);
  switch (command.type) {
    case "vm.prepare": {
      const spec = { ...command.spec, backend: command.spec.backend ?? router.defaultBackend };
      return { handle: await router.prepare(command.vmId, spec, { signal }), spec };
    }
    case "vm.start":
      return { handle: await router.start(handle, { signal }) };
    case "vm.suspend":
      return { handle: await router.suspend(handle, { signal }) };
    case "vm.resume":
      return { handle: await router.resume(handle, { signal }) };
    case "vm.stop": {
      const r = await router.stop(handle, {
        timeoutMs: command.timeoutMs,
        force: command.force,
        signal,
      });
      return { handle: r.handle, how: r.how };
    }
    case "vm.destroy":
      await router.destroy(handle, {
        timeoutMs: command.timeoutMs,
        force: "after-timeout",
        signal,
      });
      return {};
  }
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
