import type { VmHandle } from "../../../contracts/index.js";

/** The handle without what only a running VM has (its pid, its VNC address). */
export function withoutRuntime(h: VmHandle): VmHandle {
  const { pid: _pid, vncAddr: _vnc, ...rest } = h;
  return rest;
}
