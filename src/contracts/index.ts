/** Public wire contract of vmq: zod schemas and their types (`vmq/contracts`). */
export { HostId, VmId, CommandId, Prefix, ID_PATTERN, isValidId } from "./ids.js";
export {
  BackendTag,
  VmState,
  NetworkConfig,
  CloudInit,
  SealedUserData,
  XKeyPublic,
  SshConfig,
  VmSpec,
  type VmSpecInput,
  VmHandle,
  Pending,
  ConsoleEndpoint,
  Capabilities,
  VmView,
} from "./vm.js";
export {
  Command,
  type CommandInput,
  type CommandType,
  type CommandOf,
  COMMAND_SCHEMAS,
  COMMAND_TYPES,
  PrepareCommand,
  StartCommand,
  StopCommand,
  SuspendCommand,
  ResumeCommand,
  DestroyCommand,
  ExportDiskCommand,
  StopForce,
  CommandOrigin,
  MoveOrigin,
  MAX_COMMAND_BYTES,
  MAX_COMMAND_MESSAGE_BYTES,
  DEFAULT_STOP_TIMEOUT_MS,
  MAX_STOP_TIMEOUT_MS,
} from "./commands.js";
export {
  VmEvent,
  type VmEventType,
  type EventOf,
  EVENT_SCHEMAS,
  EVENT_TYPES,
  StopHow,
  ObservationSource,
  ExportedDisk,
  isOutcome,
} from "./events.js";
export {
  HostRecord,
  HostLease,
  Evacuation,
  EvacuatedVm,
  WorkerState,
  EVACUATION_HOLDER_PREFIX,
} from "./host.js";
export {
  QUERY_NAMES,
  QueryName,
  ErrorBody,
  QUERY_REPLY_SCHEMAS,
  type QueryReply,
  GuestAddress,
  PortForward,
} from "./queries.js";
export {
  names,
  parseSubject,
  commandVmToken,
  DEFAULT_PREFIX,
  INVALID_VM_TOKEN,
  DLQ_HEADERS,
  type Names,
} from "./subjects.js";
export {
  ERROR_CODES,
  hintFor,
  retryableFor,
  isErrorCode,
  type ErrorCode,
  type ErrorCodeInfo,
} from "./error-codes.js";
export {
  fieldText,
  upcastEvent,
  UPCASTERS,
  type Upcaster,
  type UpcastResult,
} from "./upcasters.js";
export { fastEvent } from "./fast-events.js";
export { parseCommand, describeIssues, type ParseResult, type ParseFailure } from "./parse.js";
export { VmTombstone, CommandDigest } from "./tombstones.js";
export {
  ImageName,
  ImageTag,
  ImageDigest,
  ImageRef,
  ImageInfo,
  parseImageRef,
  imageObject,
  IMAGE_DIGEST_METADATA,
  type ParsedImageRef,
} from "./images.js";
export { MoveRecord, MoveStep, MOVE_STEPS, FINAL_MOVE_STEPS, moveCommandId } from "./moves.js";
export { viewRecordAt, currentView, VIEW_KEY_VERSION } from "./view.js";
export { CancelRecord, CANCEL_TTL_MS, cancelKey } from "./cancels.js";
