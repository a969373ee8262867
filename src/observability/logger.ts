import { pino, type DestinationStream, type Logger } from "pino";
import { isatty } from "node:tty";
import pinoPretty from "pino-pretty";

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

/** `auto`: pretty one-liners when the log's file descriptor is a terminal, JSON otherwise. */
export type LogFormat = "auto" | "json" | "pretty";

/** Whether `format` means pretty lines on this descriptor. */
export function prettyOn(format: LogFormat, fd: number, isTty: (fd: number) => boolean): boolean {
  return format === "pretty" || (format === "auto" && isTty(fd));
}

/**
 * Structured JSON logs on stderr (pretty one-liners on a terminal); child loggers carry host,
 * vmId, commandId. Redaction happens in pino before either form is written, so pretty lines
 * censor the same fields as JSON.
 */
export function createLogger(
  opts: {
    level?: string;
    name?: string;
    destination?: number;
    format?: LogFormat;
    /** Colour in pretty mode (default: a terminal without NO_COLOR). */
    colour?: boolean;
  } = {},
): Logger {
  const fd = opts.destination ?? 2;
  const pretty = prettyOn(opts.format ?? "json", fd, (d) => isatty(d));
  const stream: DestinationStream = pretty
    ? pinoPretty({
        destination: fd,
        sync: true,
        singleLine: true,
        colorize: opts.colour ?? (isatty(fd) && !process.env.NO_COLOR),
        ignore: "pid,hostname",
        translateTime: "SYS:HH:MM:ss.l",
      })
    : pino.destination({ fd, sync: false });
  return pino(
    {
      name: opts.name ?? "vmq",
      level: opts.level ?? "info",
      redact: { paths: REDACT, censor: "[redacted]" },
    },
    stream,
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
