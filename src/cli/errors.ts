import { CommanderError } from "@commander-js/extra-typings";
import type { ErrorCode } from "../contracts/index.js";
import { isVmqError, VmqError, type ReceivedCode } from "../lib/errors.js";

/** JetStream's API error code for a stream that does not exist (JetStreamApiCodes.StreamNotFound). */
const STREAM_NOT_FOUND = 10059;

/** Codes that mean the input was wrong (exit 2) although they are not config::/cli:: codes. */
const BAD_INPUT = new Set(["command::invalid", "command::too-large", "image::invalid-ref"]);

/** What nats.js says when the server has no JetStream or no stream answers under this prefix. */
const NOT_PROVISIONED = /jetstream (is )?not enabled|no responders|stream not found/i;

/** Every error is printed as ONE line: newlines inside a message or a hint are folded. */
export const oneLine = (s: string): string => s.replace(/\s*\n\s*/g, " ").trim();

/**
 * Prints an error as one readable line, `vmq: <message> [<code>] — hint: <hint>`, and returns
 * the exit code: 2 usage/config, 1 anything else, and the operator commands' own (see
 * EXIT_CODES_HELP).
 */
export function reportError(e: unknown): number {
  if (e instanceof CommanderError) {
    // commander has printed its message (or the help) already
    return e.exitCode === 0 ? 0 : 2;
  }
  if (isVmqError(e)) {
    const hint = e.hint ? ` — hint: ${oneLine(e.hint)}` : "";
    process.stderr.write(`vmq: ${oneLine(e.message)} [${e.code}]${hint}\n`);
    return (
      (e as { exitCode?: number }).exitCode ??
      (e.code.startsWith("config::") || BAD_INPUT.has(e.code) ? 2 : 1)
    );
  }
  if (
    (e as { code?: unknown }).code === STREAM_NOT_FOUND ||
    NOT_PROVISIONED.test(e instanceof Error ? e.message : "")
  ) {
    // Nothing was provisioned under this prefix yet, or the server runs without JetStream.
    process.stderr.write(
      `vmq: vmq is not provisioned on this server (${oneLine((e as Error).message)}) [nats::not-provisioned] — hint: start a vmq worker with this prefix on this NATS first (workers create the streams and buckets; the server needs JetStream, nats-server -js); check --prefix / VMQ_PREFIX and --nats\n`,
    );
    return 1;
  }
  process.stderr.write(`vmq: ${oneLine(e instanceof Error ? e.message : String(e))}\n`);
  return 1;
}

/** An error the CLI prints as one readable line and turns into an exit code. */
export class CliError extends VmqError {
  constructor(
    code: ErrorCode | ReceivedCode,
    message: string,
    hint?: string,
    readonly exitCode = 2,
  ) {
    super(code, message, hint === undefined ? {} : { hint });
    this.name = "CliError";
  }
}
