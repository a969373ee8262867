/**
 * A fast path for reading the events a replay sees most (intents, outcomes, specs without
 * cloud-init or ssh): plain checks that accept only what the zod schema
 * (`VmEvent`) accepts, with the same result. Anything else (another type, a field it does not
 * know, a default zod would fill in, a spec) is left to zod by returning undefined. Zod costs
 * about as much as JSON.parse per event on a full replay (docs/benchmark.md); these checks a
 * fraction. test/unit/contracts/fast-events.test.ts checks both against each other.
 */
import { CommandId, ID_PATTERN } from "./ids.js";
import { CommandAcceptedEvent, StopHow } from "./events.js";
import { VmState } from "./vm.js";
import { MAX_STOP_TIMEOUT_MS } from "./commands.js";
import type { VmEvent } from "./events.js";

type Obj = Record<string, unknown>;

/** The patterns zod itself checks, taken from the schemas so the two cannot drift apart. */
const patternOf = (schema: unknown): RegExp => {
  const def = (schema as { _zod?: { def?: { pattern?: unknown; checks?: unknown[] } } })._zod?.def;
  if (def?.pattern instanceof RegExp) return def.pattern;
  for (const c of def?.checks ?? []) {
    const p = (c as { _zod?: { def?: { pattern?: unknown } } })._zod?.def?.pattern;
    if (p instanceof RegExp) return p;
  }
  throw new Error("fast-events: a schema without the pattern it was expected to have");
};
const DATETIME = patternOf(CommandAcceptedEvent.shape.at);
const COMMAND_ID = patternOf(CommandId);
const MAC = /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/;
const IFNAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,30}$/;

// The same lists as the zod enums, so a state or stop kind added there cannot drift here.
const STATES = new Set<string>(VmState.options);
const BACKENDS = new Set(["qemu", "propolis", "noop"]);
const STOP_HOW = new Set<string>(StopHow.options);
const FORCE = new Set(["never", "after-timeout", "now"]);
const ACCELERATORS = new Set(["kvm", "tcg"]);

const isStr = (v: unknown): v is string => typeof v === "string";
const isInt = (v: unknown): v is number => Number.isSafeInteger(v);
const isId = (v: unknown): boolean => isStr(v) && ID_PATTERN.test(v);
const isTime = (v: unknown): boolean => isStr(v) && DATETIME.test(v);
const isCommandId = (v: unknown): boolean => isStr(v) && COMMAND_ID.test(v);
const optStr = (v: unknown): boolean => v === undefined || isStr(v);

/** Every key of `o` is one of `known` (zod drops unknown keys: those go the slow way). */
function onlyKeys(o: Obj, known: ReadonlySet<string>): boolean {
  for (const k in o) if (!known.has(k)) return false;
  return true;
}

const BASE_KEYS = [
  "type",
  "version",
  "eventId",
  "vmId",
  "host",
  "at",
  "causationId",
  "correlationId",
  "state",
  "reconciled",
];
const keys = (...more: string[]): ReadonlySet<string> => new Set([...BASE_KEYS, ...more]);

function base(e: Obj): boolean {
  return (
    e.version === 1 &&
    isStr(e.eventId) &&
    e.eventId.length >= 1 &&
    e.eventId.length <= 256 &&
    isId(e.vmId) &&
    isId(e.host) &&
    isTime(e.at) &&
    (e.causationId === null || isCommandId(e.causationId)) &&
    (e.correlationId === undefined ||
      e.correlationId === null ||
      (isStr(e.correlationId) && e.correlationId.length <= 128)) &&
    STATES.has(e.state as string) &&
    (e.reconciled === undefined || typeof e.reconciled === "boolean")
  );
}

function network(n: unknown): boolean {
  if (typeof n !== "object" || n === null) return false;
  const o = n as Obj;
  switch (o.type) {
    case "user":
    case "none":
      return onlyKeys(o, NET_PLAIN);
    case "tap":
      return onlyKeys(o, NET_TAP) && isStr(o.bridge) && IFNAME.test(o.bridge);
    case "vnic":
      return onlyKeys(o, NET_VNIC) && isStr(o.name) && IFNAME.test(o.name);
    default:
      return false;
  }
}
const NET_PLAIN = new Set(["type"]);
const NET_TAP = new Set(["type", "bridge"]);
const NET_VNIC = new Set(["type", "name"]);

const HANDLE_KEYS = new Set([
  "id",
  "name",
  "backend",
  "workDir",
  "overlayPath",
  "seedIsoPath",
  "pid",
  "qmpSocket",
  "consoleSocket",
  "vncAddr",
  "vcpus",
  "memoryMb",
  "diskGb",
  "network",
  "sshHostPort",
  "macAddr",
  "uefi",
  "accelerator",
  "propolisAddr",
  "zoneName",
]);

/** A VmHandle with every defaulted field present (absent ones are zod's to fill in). */
function handle(h: unknown): boolean {
  if (typeof h !== "object" || h === null || Array.isArray(h)) return false;
  const o = h as Obj;
  return (
    onlyKeys(o, HANDLE_KEYS) &&
    isId(o.id) &&
    isStr(o.name) &&
    BACKENDS.has(o.backend as string) &&
    isStr(o.workDir) &&
    optStr(o.overlayPath) &&
    optStr(o.seedIsoPath) &&
    (o.pid === undefined || (isInt(o.pid) && o.pid > 0)) &&
    optStr(o.qmpSocket) &&
    optStr(o.consoleSocket) &&
    optStr(o.vncAddr) &&
    isInt(o.vcpus) &&
    o.vcpus >= 1 &&
    isInt(o.memoryMb) &&
    o.memoryMb >= 1 &&
    (o.diskGb === undefined || isInt(o.diskGb)) &&
    network(o.network) &&
    (o.sshHostPort === undefined ||
      (isInt(o.sshHostPort) && o.sshHostPort >= 1 && o.sshHostPort <= 65535)) &&
    (o.macAddr === undefined || (isStr(o.macAddr) && MAC.test(o.macAddr))) &&
    typeof o.uefi === "boolean" &&
    (o.accelerator === undefined || ACCELERATORS.has(o.accelerator as string)) &&
    optStr(o.propolisAddr) &&
    optStr(o.zoneName)
  );
}

const SPEC_KEYS = new Set([
  "name",
  "backend",
  "imagePath",
  "vcpus",
  "memoryMb",
  "diskGb",
  "network",
  "cloudInit",
  "ssh",
  "uefi",
]);
// eslint-disable-next-line no-control-regex -- NUL is exactly what is refused
const NO_NUL = /^[^\u0000]*$/;
const NO_DOTDOT = /^(?!(?:.*[\\/])?\.\.(?:[\\/]|$))/;
const text = (v: unknown, min: number, max: number): boolean =>
  isStr(v) && v.length >= min && v.length <= max && NO_NUL.test(v);

/** A VmSpec without cloud-init or ssh (those have refinements of their own: zod's). */
function spec(sp: unknown): boolean {
  if (typeof sp !== "object" || sp === null || Array.isArray(sp)) return false;
  const o = sp as Obj;
  return (
    onlyKeys(o, SPEC_KEYS) &&
    o.cloudInit === undefined &&
    o.ssh === undefined &&
    text(o.name, 1, 128) &&
    (o.backend === undefined || BACKENDS.has(o.backend as string)) &&
    text(o.imagePath, 1, 4096) &&
    NO_DOTDOT.test(o.imagePath as string) &&
    isInt(o.vcpus) &&
    o.vcpus >= 1 &&
    o.vcpus <= 64 &&
    isInt(o.memoryMb) &&
    o.memoryMb >= 64 &&
    o.memoryMb <= 1048576 &&
    (o.diskGb === undefined || (isInt(o.diskGb) && o.diskGb >= 1 && o.diskGb <= 65536)) &&
    network(o.network) &&
    typeof o.uefi === "boolean"
  );
}

const COMMAND_KEYS = new Set([
  "type",
  "version",
  "commandId",
  "vmId",
  "issuedAt",
  "correlationId",
  "expectedVersion",
  "notAfter",
]);
const PREPARE_KEYS = new Set([...COMMAND_KEYS, "spec"]);
const STOP_KEYS = new Set([...COMMAND_KEYS, "timeoutMs", "force"]);
const DESTROY_KEYS = new Set([...COMMAND_KEYS, "timeoutMs"]);

const timeout = (v: unknown): boolean => isInt(v) && v >= 0 && v <= MAX_STOP_TIMEOUT_MS;

/** A command with its defaults already filled in (as stored in an intent). */
function command(c: unknown): boolean {
  if (typeof c !== "object" || c === null || Array.isArray(c)) return false;
  const o = c as Obj;
  let known: ReadonlySet<string>;
  switch (o.type) {
    case "vm.prepare":
      if (!spec(o.spec)) return false;
      known = PREPARE_KEYS;
      break;
    case "vm.start":
    case "vm.suspend":
    case "vm.resume":
      known = COMMAND_KEYS;
      break;
    case "vm.stop":
      if (!timeout(o.timeoutMs) || !FORCE.has(o.force as string)) return false;
      known = STOP_KEYS;
      break;
    case "vm.destroy":
      if (!timeout(o.timeoutMs)) return false;
      known = DESTROY_KEYS;
      break;
    default:
      return false;
  }
  return (
    onlyKeys(o, known) &&
    o.version === 1 &&
    isCommandId(o.commandId) &&
    isId(o.vmId) &&
    isTime(o.issuedAt) &&
    (o.correlationId === undefined ||
      (isStr(o.correlationId) && o.correlationId.length >= 1 && o.correlationId.length <= 128)) &&
    (o.expectedVersion === undefined || (isInt(o.expectedVersion) && o.expectedVersion >= 0)) &&
    (o.notAfter === undefined || isTime(o.notAfter))
  );
}

const ACCEPTED_KEYS = keys("command", "deadline");
const TRANSITION_KEYS = keys("handle");
const STOPPED_KEYS = keys("handle", "how");
const PREPARED_KEYS = keys("handle", "spec");
const DESTROYED_KEYS = keys();

/**
 * The event as zod would return it, when it is one of the common shapes and valid; undefined
 * means "ask zod" (it may still be valid, or not). `raw` comes from JSON.parse and is owned by
 * the caller: it is returned as it is, not copied.
 */
export function fastEvent(raw: unknown): VmEvent | undefined {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) return undefined;
  const e = raw as Obj;
  let ok: boolean;
  switch (e.type) {
    case "vm.command-accepted":
      ok = onlyKeys(e, ACCEPTED_KEYS) && isTime(e.deadline) && command(e.command);
      break;
    case "vm.started":
    case "vm.suspended":
    case "vm.resumed":
      ok = onlyKeys(e, TRANSITION_KEYS) && (e.handle === undefined || handle(e.handle));
      break;
    case "vm.stopped":
      ok =
        onlyKeys(e, STOPPED_KEYS) &&
        STOP_HOW.has(e.how as string) &&
        (e.handle === undefined || handle(e.handle));
      break;
    case "vm.prepared":
      ok = onlyKeys(e, PREPARED_KEYS) && handle(e.handle) && (e.spec === undefined || spec(e.spec));
      break;
    case "vm.destroyed":
      ok = onlyKeys(e, DESTROYED_KEYS);
      break;
    default:
      return undefined;
  }
  return ok && base(e) ? (e as VmEvent) : undefined;
}
