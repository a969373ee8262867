import type { z } from "zod";
import { COMMAND_SCHEMAS, MAX_COMMAND_BYTES, type Command } from "./commands.js";
import { isValidId } from "./ids.js";

export interface ParseFailure {
  ok: false;
  code:
    | "command::not-json"
    | "command::too-large"
    | "command::invalid"
    | "command::unknown-type"
    | "command::unsupported-version"
    | "command::subject-mismatch";
  message: string;
  /** What could be salvaged from the body, for the rejection event and the DLQ subject. */
  vmId?: string;
  commandId?: string;
  type?: string;
}
export type ParseResult = { ok: true; command: Command } | ParseFailure;

/** One readable line naming each failing field: `spec.vcpus: Too big: expected number to be <=64`. */
export function describeIssues(error: z.ZodError): string {
  return error.issues
    .slice(0, 5)
    .map((i) => `${i.path.length ? i.path.join(".") : "(body)"}: ${i.message}`)
    .join("; ");
}

const decoder = new TextDecoder("utf-8", { fatal: true });

/**
 * Parses a raw command as the worker receives it. `subjectVmId` is the vmId token of the
 * subject it arrived on; the body must name the same VM.
 */
export function parseCommand(raw: Uint8Array | string, subjectVmId?: string): ParseResult {
  const size = typeof raw === "string" ? new TextEncoder().encode(raw).length : raw.length;
  const salvageVm: { vmId?: string } = isValidId(subjectVmId) ? { vmId: subjectVmId } : {};
  if (size > MAX_COMMAND_BYTES) {
    return {
      ok: false,
      code: "command::too-large",
      message: `command is ${size} bytes; the limit is ${MAX_COMMAND_BYTES}`,
      ...salvageVm,
    };
  }
  let body: unknown;
  try {
    body = JSON.parse(typeof raw === "string" ? raw : decoder.decode(raw));
  } catch (e) {
    return {
      ok: false,
      code: "command::not-json",
      message: `command is not JSON: ${(e as Error).message}`,
      ...salvageVm,
    };
  }
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    return {
      ok: false,
      code: "command::invalid",
      message: "command must be a JSON object",
      ...salvageVm,
    };
  }
  const b = body as Record<string, unknown>;
  // What a failure can salvage; built only when something fails (not per valid command).
  const salvage = () => ({
    ...salvageVm,
    ...(typeof b.commandId === "string" ? { commandId: b.commandId.slice(0, 256) } : {}),
    ...(typeof b.type === "string" ? { type: b.type.slice(0, 64) } : {}),
  });
  if (subjectVmId !== undefined && b.vmId !== subjectVmId) {
    return {
      ok: false,
      code: "command::subject-mismatch",
      message: `body vmId ${JSON.stringify(b.vmId)} differs from the subject's vmId ${JSON.stringify(subjectVmId)}`,
      ...salvage(),
    };
  }
  const schema =
    typeof b.type === "string"
      ? COMMAND_SCHEMAS[b.type as keyof typeof COMMAND_SCHEMAS]
      : undefined;
  if (!schema || !Object.hasOwn(COMMAND_SCHEMAS, b.type as string)) {
    return {
      ok: false,
      code: "command::unknown-type",
      message: `unknown command type ${JSON.stringify(b.type)}`,
      ...salvage(),
    };
  }
  if (b.version !== 1) {
    return {
      ok: false,
      code: "command::unsupported-version",
      message: `${String(b.type)} version ${JSON.stringify(b.version)} is not supported (this worker reads version 1)`,
      ...salvage(),
    };
  }
  const parsed = schema.safeParse(body);
  if (!parsed.success) {
    return {
      ok: false,
      code: "command::invalid",
      message: `invalid ${String(b.type)}: ${describeIssues(parsed.error)}`,
      ...salvage(),
    };
  }
  // A digest stands for user-data that was withheld (events, DLQ copies): nothing to run with.
  if (parsed.data.type === "vm.prepare" && parsed.data.spec.cloudInit?.userDataDigest) {
    return {
      ok: false,
      code: "command::invalid",
      message:
        "invalid vm.prepare: spec.cloudInit: user-data was withheld (userDataDigest only, as in events and DLQ copies); send the command again with its user-data",
      ...salvage(),
    };
  }
  return { ok: true, command: parsed.data };
}
