import { JetStreamApiError } from "@nats-io/jetstream";
import { MAX_COMMAND_BYTES } from "../contracts/index.js";
import { VmqError } from "../lib/errors.js";

/** How the client reads records and refuses oversized commands: shared by the SDK and the CLI. */
const decoder = new TextDecoder();
/** A record from the bucket, or undefined when it is not JSON or not of the schema. */
export function parseJson<T>(
  data: Uint8Array,
  schema: { safeParse(v: unknown): { success: boolean; data?: T } },
): T | undefined {
  const r = schema.safeParse(jsonOf(data));
  return r.success ? r.data : undefined;
}

/** The payload as JSON, or undefined when it is not JSON (a schema then refuses it). */
export function jsonOf(data: Uint8Array): unknown {
  try {
    return JSON.parse(decoder.decode(data));
  } catch {
    return undefined;
  }
}

export const commandTooLarge = (bytes: number, cause?: unknown): VmqError =>
  new VmqError(
    "command::too-large",
    `the command is ${bytes} bytes; commands are at most ${MAX_COMMAND_BYTES} bytes`,
    cause === undefined ? {} : { cause },
  );

/**
 * The commands stream refuses a message over its max_msg_size at publish (JetStream error
 * 10054): said with the contract's code, so the publisher knows at once and nothing is recorded.
 */
export function refusedAsTooLarge(e: unknown, bytes: number): unknown {
  return e instanceof JetStreamApiError && e.code === 10054 ? commandTooLarge(bytes, e) : e;
}
