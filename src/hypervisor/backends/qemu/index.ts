export { QemuBackend, vmPaths, type QemuBackendOptions, type QemuLogger } from "./qemu-backend.js";
export { QmpClient, type QmpClientOptions, type QmpEvent } from "./qmp-client.js";
export { buildQemuArgs, qemuOptValue, type QemuLaunchConfig } from "./qemu-command-line.js";
export {
  detectAccelerator,
  defaultCpuModel,
  type Accelerator,
  type AcceleratorChoice,
} from "./accelerator.js";
export { mapRunState, RUN_STATE_MAP } from "./run-state.js";
