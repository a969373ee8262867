export {
  PropolisBackend,
  mapInstanceState,
  type PropolisBackendOptions,
} from "./propolis-backend.js";
export { PropolisClient, type PropolisClientOptions } from "./propolis-client.js";
export { PropolisStateMonitor, type MonitorUpdate } from "./propolis-state-monitor.js";
export { CommandRunner, type CommandRunnerOptions, type Tool } from "./command-runner.js";
export { connectSerial, serialUrl } from "./propolis-serial.js";
export { PROPOLIS_API_VERSION } from "./propolis-api.js";
