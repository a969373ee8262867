export { PropolisBackend } from "./propolis-backend.js";
export { PROPOLIS_DEFAULTS, type PropolisBackendOptions } from "./propolis-options.js";
export { mapInstanceState } from "./instance-states.js";
export { PropolisClient, type PropolisClientOptions } from "./propolis-client.js";
export { PropolisStateMonitor, type MonitorUpdate } from "./propolis-state-monitor.js";
export { CommandRunner, type CommandRunnerOptions, type Tool } from "./command-runner.js";
export { connectSerial, openSerialConsole, serialUrl } from "./propolis-serial.js";
export { PROPOLIS_API_VERSION } from "./propolis-api.js";
