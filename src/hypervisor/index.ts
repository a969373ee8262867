export type {
  Hypervisor,
  CallOptions,
  StopOptions,
  StopResult,
  ObservedChange,
  ChangeListener,
  ConsoleHandlers,
  ConsoleConnection,
} from "./hypervisor.js";
export { HypervisorRouter } from "./router.js";
export {
  HypervisorError,
  isHypervisorError,
  checkAborted,
  type HypervisorErrorCode,
} from "./errors.js";
export { NoopBackend, type NoopOptions, type NoopOperation } from "./backends/noop/noop-backend.js";
export { PropolisBackend, type PropolisBackendOptions } from "./backends/propolis/index.js";
export { QemuBackend, type QemuBackendOptions } from "./backends/qemu/index.js";
