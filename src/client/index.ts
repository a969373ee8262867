/** vmq's client SDK for schedulers and subscribers (the package's main export). */
export {
  VmqClient,
  type VmqClientOptions,
  type CommandBody,
  type SendResult,
  type WatchOptions,
  type ReadOptions,
  type ReadStats,
  type CancelOptions,
  type CancelResult,
  type MoveOptions,
} from "./vm-client.js";
export * as contracts from "../contracts/index.js";
export { VmqError, isVmqError } from "../lib/errors.js";
export { findTombstone } from "./tombstones.js";
export { sealSpecFor, type SealOptions } from "./sealing.js";
export { ConsoleSession } from "./console-session.js";
export {
  DeadLetters,
  type DlqEntry,
  type DlqRetryOptions,
  type DlqRetryResult,
} from "./dead-letters.js";
export { ImageStore, type PushOptions, type RemoveOptions } from "./images/image-store.js";
export { imageUsers, pruneMoveImages, type PruneResult } from "./images/image-use.js";
export type { ResolvedImage } from "../event-store/image-bucket.js";
export { evacuate, evacuationCommandId, type EvacuateOptions } from "./evacuation.js";
export { move } from "./move.js";
