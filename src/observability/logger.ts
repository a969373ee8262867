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
