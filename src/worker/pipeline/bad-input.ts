import {
  COMMAND_TYPES,
  commandVmToken,
  isValidId,
  type ParseFailure,
} from "../../contracts/index.js";
import { hasSeen, rejectInvalid } from "../../domain/index.js";
import type { PipelineDeps } from "./pipeline-deps.js";
import { redeliveryDelay } from "./retry-policy.js";
import { nak, TERM, type CommandMessage, type Settlement } from "./settlement.js";

/** A parse failure, or user-data sealed to another host: refused before any effect. */
export type BadInput =
  | ParseFailure
  | (Omit<ParseFailure, "code"> & { code: "userdata::wrong-host" | "userdata::unsealable" });

/**
 * Not JSON, schema failure, subject mismatch, too large, unknown type or version: recorded as
 * vm.command-rejected when the subject names a valid vmId (once per commandId), copied to the
 * DLQ, and terminated. If the DLQ cannot be reached it comes back later.
 */
export async function rejectBadInput(
  deps: PipelineDeps,
  msg: CommandMessage,
  p: BadInput,
): Promise<Settlement> {
  const vmToken = commandVmToken(msg.subject);
  const log = deps.log.child({
    vmId: isValidId(vmToken) ? vmToken : undefined,
    seq: msg.seq,
    code: p.code,
  });
  try {
    if (isValidId(vmToken)) {
      await deps.streams.update(vmToken, (vm) => {
        // A commandId that already has an outcome gets no second one (it is still dead-lettered).
        if (p.commandId !== undefined && hasSeen(vm, p.commandId)) {
          deps.stats.duplicates++;
          return undefined;
        }
        const info = {
          ...(p.commandId === undefined ? {} : { commandId: p.commandId }),
          code: p.code,
          message: p.message,
          streamSeq: msg.seq,
        };
        return rejectInvalid(vm, info, { now: deps.clock.now() });
      });
    }
    await deps.deadLetters.put({
      subject: msg.subject,
      data: msg.data,
      headers: msg.headers,
      streamSeq: msg.seq,
      code: p.code,
      reason: p.message,
      attempts: msg.info.deliveryCount,
    });
    deps.stats.deadLettered++;
    // Counted under its type only when that is a known one: a client's own strings as
    // metric labels would grow the series without end.
    deps.stats.count(isCommandType(p.type) ? p.type : "invalid", "rejected");
    log.warn(`bad command dead-lettered: ${p.message}`);
    return TERM;
  } catch (e) {
    log.error({ err: e }, "could not dead-letter a bad command; it will be redelivered");
    return nak(redeliveryDelay(msg.info.deliveryCount));
  }
}

const KNOWN_TYPES: ReadonlySet<string> = new Set(COMMAND_TYPES);
function isCommandType(t: string | undefined): t is string {
  return t !== undefined && KNOWN_TYPES.has(t);
}
