import type { ErrorCode } from "../contracts/index.js";
import { VmqError, type ReceivedCode } from "../lib/errors.js";

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
