import { pino, type Logger } from "pino";

export type { Logger } from "pino";

/** cloud-init user data and credentials may hold secrets: never logged. */
const REDACT = [
  "*.cloudInit.userData",
  "spec.cloudInit.userData",
  "command.spec.cloudInit.userData",
  "*.command.spec.cloudInit.userData",
  "password",
  "token",
  "*.password",
  "*.token",
];

/** Structured JSON logs on stderr; child loggers carry host, vmId, commandId. */
export function createLogger(
  opts: { level?: string; name?: string; destination?: number } = {},
): Logger {
  return pino(
    {
      name: opts.name ?? "vmq",
      level: opts.level ?? "info",
      redact: { paths: REDACT, censor: "[redacted]" },
    },
    pino.destination({ fd: opts.destination ?? 2, sync: false }),
  );
}

export const silentLogger = (): Logger => pino({ level: "silent" });

/** The few logging calls a command makes, with its fields attached. */
export interface BoundLogger {
  debug(obj: object | string, msg?: string): void;
  info(obj: object | string, msg?: string): void;
  warn(obj: object | string, msg?: string): void;
  error(obj: object | string, msg?: string): void;
}

/**
 * Attaches fields to each call instead of creating a pino child: a child serialises its
 * bindings up front, which costs more than the one or two lines a command logs.
 */
export function withBindings(base: Logger, bindings: Record<string, unknown>): BoundLogger {
  const at =
    (level: "debug" | "info" | "warn" | "error") =>
    (obj: object | string, msg?: string): void => {
      if (!base.isLevelEnabled(level)) return;
      if (typeof obj === "string") base[level](bindings, obj);
      else base[level]({ ...bindings, ...obj }, msg);
    };
  return { debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") };
}
