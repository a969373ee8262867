/** vmq's client SDK for schedulers and subscribers (the package's main export). */
export {
  VmqClient,
  type VmqClientOptions,
  type CommandBody,
  type SendResult,
  type WatchOptions,
} from "./vm-client.js";
export * as contracts from "../contracts/index.js";
export { VmqError, isVmqError } from "../lib/errors.js";
export { findTombstone } from "./tombstones.js";
export { sealSpecFor, type SealOptions } from "./sealing.js";
export { ConsoleSession } from "./console-session.js";
export { evacuate, evacuationCommandId, type EvacuateOptions } from "./evacuation.js";
