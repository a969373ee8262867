import { hintFor, retryableFor, type ErrorCode } from "../contracts/error-codes.js";

const BRAND = Symbol.for("vmq.error");

/**
 * A code received from another process (a query's error reply, a command's outcome), kept as
 * sent: it may come from a newer vmq whose table this one does not know. The one way to build
 * a VmqError with a code that is not a literal of ERROR_CODES.
 */
export type ReceivedCode = string & { readonly __received: true };
export const receivedCode = (code: string): ReceivedCode => code as ReceivedCode;

export interface VmqErrorOptions {
  /**
   * Overrides the table's `retryable` for this one error. Only for documented exceptions (a
   * prepare whose cleanup failed, a test's injected fault): the table decides otherwise.
   */
  retryable?: boolean;
  hint?: string;
  cause?: unknown;
  /** Extra context for logs (never secrets). */
  details?: Record<string, unknown>;
}

/**
 * The one error base of vmq: a stable `area::reason` code from ERROR_CODES, whether trying
 * again may help (from the table) and a one-line hint for a person. Nobody parses `message`.
 */
export class VmqError extends Error {
  readonly code: ErrorCode | ReceivedCode;
  readonly retryable: boolean;
  readonly hint: string | undefined;
  readonly details: Record<string, unknown> | undefined;
  readonly [BRAND] = true;

  constructor(code: ErrorCode | ReceivedCode, message: string, opts: VmqErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = "VmqError";
    this.code = code;
    this.retryable = opts.retryable ?? retryableFor(code);
    this.hint = opts.hint ?? hintFor(code);
    this.details = opts.details;
  }

  toJSON(): { code: string; message: string; hint?: string } {
    return { code: this.code, message: this.message, ...(this.hint ? { hint: this.hint } : {}) };
  }
}

/** instanceof that survives two copies of the package; optionally checks the code. */
export function isVmqError(e: unknown, code?: ErrorCode): e is VmqError {
  return (
    typeof e === "object" &&
    e !== null &&
    (e as Record<symbol, unknown>)[BRAND] === true &&
    (code === undefined || (e as VmqError).code === code)
  );
}

/** Any thrown value as a coded error (unknown errors are `internal::unexpected`, not retried). */
export function toVmqError(e: unknown, fallbackCode: ErrorCode = "internal::unexpected"): VmqError {
  if (isVmqError(e)) return e;
  if (e instanceof Error && e.name === "AbortError") {
    return new VmqError("hypervisor::aborted", e.message || "the call was aborted", { cause: e });
  }
  const message = e instanceof Error ? e.message : String(e);
  return new VmqError(fallbackCode, message, { cause: e });
}

/** A server's permission violation: nats.js says so in the error or its cause (a request wraps it). */
export function isPermissionViolation(e: unknown): boolean {
  for (let x: unknown = e; x instanceof Error; x = x.cause)
    if (x.name === "PermissionViolationError") return true;
  return false;
}
