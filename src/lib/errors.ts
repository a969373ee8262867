import { hintFor } from "../contracts/error-codes.js";

const BRAND = Symbol.for("vmq.error");

export interface VmqErrorOptions {
  retryable?: boolean;
  hint?: string;
  cause?: unknown;
  /** Extra context for logs (never secrets). */
  details?: Record<string, unknown>;
}

/**
 * The one error base of vmq: a stable `area::reason` code, whether trying again may help, and
 * a one-line hint for a person. Nobody parses `message`.
 */
export class VmqError extends Error {
  readonly code: string;
  readonly retryable: boolean;
  readonly hint: string | undefined;
  readonly details: Record<string, unknown> | undefined;
  readonly [BRAND] = true;

  constructor(code: string, message: string, opts: VmqErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = "VmqError";
    this.code = code;
    this.retryable = opts.retryable ?? false;
    this.hint = opts.hint ?? hintFor(code);
    this.details = opts.details;
  }

  toJSON(): { code: string; message: string; hint?: string } {
    return { code: this.code, message: this.message, ...(this.hint ? { hint: this.hint } : {}) };
  }
}

/** instanceof that survives two copies of the package; optionally checks the code. */
export function isVmqError(e: unknown, code?: string): e is VmqError {
  return (
    typeof e === "object" &&
    e !== null &&
    (e as Record<symbol, unknown>)[BRAND] === true &&
    (code === undefined || (e as VmqError).code === code)
  );
}

/** Any thrown value as a coded error (unknown errors are `internal::unexpected`, not retried). */
export function toVmqError(e: unknown, fallbackCode = "internal::unexpected"): VmqError {
  if (isVmqError(e)) return e;
  if (e instanceof Error && e.name === "AbortError") {
    return new VmqError("hypervisor::aborted", e.message || "the call was aborted", {
      retryable: true,
      cause: e,
    });
  }
  const message = e instanceof Error ? e.message : String(e);
  return new VmqError(fallbackCode, message, { cause: e });
}
