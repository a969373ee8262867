export { QemuBackend } from "./qemu-backend.js";
export { QEMU_DEFAULTS, type QemuBackendOptions, type QemuLogger } from "./qemu-options.js";
export { vmPaths, type VmPaths } from "./qemu-files.js";
export { QmpClient, type QmpClientOptions, type QmpEvent } from "./qmp-client.js";
export { buildQemuArgs, qemuOptValue, type QemuLaunchConfig } from "./qemu-command-line.js";
export {
  detectAccelerator,
  defaultCpuModel,
  type Accelerator,
  type AcceleratorChoice,
} from "./accelerator.js";
export { mapRunState, RUN_STATE_MAP } from "./run-state.js";
