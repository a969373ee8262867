export type {
  Hypervisor,
  CallOptions,
  StopOptions,
  StopResult,
  ObservedChange,
  ChangeListener,
  ConsoleHandlers,
  ConsoleConnection,
  DiskExport,
} from "./hypervisor.js";
export { HypervisorRouter } from "./router.js";
export {
  HypervisorError,
  isHypervisorError,
  checkAborted,
  type HypervisorErrorCode,
} from "./errors.js";
export { NoopBackend, NOOP_DEFAULTS, type NoopOptions } from "./backends/noop/noop-backend.js";
export {
  FaultyBackend,
  FAULT_DEFAULTS,
  type FaultOptions,
  type BackendOperation,
} from "./testing/faulty-backend.js";
export { PropolisBackend, type PropolisBackendOptions } from "./backends/propolis/index.js";
export { QemuBackend, type QemuBackendOptions } from "./backends/qemu/index.js";
