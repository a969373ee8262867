import type { Command, OptionValues } from "@commander-js/extra-typings";
import type { NatsConnection } from "@nats-io/transport-node";
import type { z } from "zod";
import { VmqClient } from "../client/index.js";
import { WorkerConfig, type WorkerConfigInput } from "../config/config.js";
import { VmId, describeIssues, names, type Names } from "../contracts/index.js";
import { isVmqError, toVmqError } from "../lib/errors.js";
import { connectNats } from "../worker/nats/connect.js";
import { addConfigFlags, configFromFlags, type FlagSelection } from "./config-flags.js";
import { activeContext } from "./contexts.js";
import { CliError } from "./errors.js";

/** The worker's connection flags, reused as they are (same names, same environment variables). */
const CONNECTION_KEYS = [
  "nats",
  "prefix",
  "creds",
  "nkeySeed",
  "user",
  "password",
  "token",
  "tlsCa",
  "tlsCert",
  "tlsKey",
] as const satisfies readonly (keyof WorkerConfigInput)[];

const SELECTION: FlagSelection = {
  only: CONNECTION_KEYS,
  describe: { nats: "NATS server URL(s), comma-separated (default: nats://127.0.0.1:4222)." },
};

const ConnectionConfig = WorkerConfig.pick({
  nats: true,
  prefix: true,
  creds: true,
  nkeySeed: true,
  user: true,
  password: true,
  token: true,
  tlsCa: true,
  tlsCert: true,
  tlsKey: true,
});
type ConnectionConfig = z.infer<typeof ConnectionConfig>;

/** Exit codes of the operator commands (documented in --help). */
export const EXIT = { ok: 0, failed: 1, usage: 2, rejected: 3, timeout: 4 } as const;

export const EXIT_CODES_HELP = `
Exit codes:
  0  success
  1  the command failed (vm.command-failed), or another error
  2  usage or configuration error (bad flag, bad vmId, bad spec)
  3  the command was rejected (vm.command-rejected)
  4  timed out waiting for the outcome (the message says whether it was at least accepted)
`;

/** Adds the connection flags (--nats, --prefix, --creds, ...) of `vmq worker` to a command. */
export function addConnectionFlags<A extends unknown[], O extends OptionValues>(
  cmd: Command<A, O>,
): Command<A, O> {
  cmd.option(
    "--context <name>",
    "use this saved context's connection settings (vmq context ls) [env VMQ_CONTEXT]",
  );
  return addConfigFlags(cmd, SELECTION);
}

/**
 * The connection settings of this invocation: flag > environment variable > context (--context,
 * VMQ_CONTEXT or the selected one) > default. `source` names the context used, if any.
 */
export async function connectionSettings(
  opts: object,
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ config: ConnectionConfig; context: string | undefined }> {
  const flag = (opts as { context?: string }).context;
  const ctx = await activeContext(flag, env);
  const { description: _d, ...fromContext } = ctx?.settings ?? {};
  const parsed = ConnectionConfig.safeParse({
    ...fromContext,
    ...configFromFlags(opts, env, SELECTION),
  });
  if (!parsed.success)
    throw new CliError(
      "config::invalid",
      `invalid connection settings${ctx ? ` (context ${ctx.name})` : ""}: ${describeIssues(parsed.error)}`,
      "See --help for the connection flags and their environment variables.",
    );
  return { config: parsed.data, context: ctx?.name };
}

export interface Connected {
  nc: NatsConnection;
  client: VmqClient;
  names: Names;
}

/** Connects with the flags/env of `addConnectionFlags`, runs `fn`, and always closes. */
export async function withClient<T>(opts: object, fn: (c: Connected) => Promise<T>): Promise<T> {
  const { config } = await connectionSettings(opts);
  let nc: NatsConnection;
  try {
    nc = await connectNats(config, "vmq-cli");
  } catch (e) {
    const err = toVmqError(e, "nats::unreachable");
    throw new CliError(
      err.code,
      err.message,
      err.code === "nats::unreachable"
        ? "Pass --nats (or VMQ_NATS_URL) and the credentials flags of your deployment."
        : (err.hint ?? ""),
      err.code.startsWith("config::") ? EXIT.usage : EXIT.failed,
    );
  }
  try {
    return await fn({
      nc,
      client: new VmqClient(nc, { prefix: config.prefix }),
      names: names(config.prefix),
    });
  } finally {
    await nc.drain().catch(() => nc.close());
  }
}

const firstIssue = (e: { issues: { message: string }[] }): string =>
  e.issues[0]?.message ?? "invalid";

/** A vmId checked against the contract's id schema (exit 2 otherwise). */
export function vmIdArg(raw: string): string {
  const r = VmId.safeParse(raw);
  if (!r.success)
    throw new CliError(
      "cli::invalid-vm-id",
      `invalid vmId ${JSON.stringify(raw)}: ${firstIssue(r.error)}`,
    );
  return r.data;
}

/** A host id checked against the contract's id schema (exit 2 otherwise). */
export function hostArg(raw: string | undefined): string | undefined {
  if (raw === undefined) return undefined;
  const r = WorkerConfig.shape.host.safeParse(raw);
  if (!r.success)
    throw new CliError(
      "cli::invalid-host",
      `invalid host ${JSON.stringify(raw)}: ${firstIssue(r.error)}`,
    );
  return r.data;
}

/** A non-negative integer option (commander argParser); exit 2 otherwise. */
export function intOption(what: string): (raw: string) => number {
  return (raw) => {
    const n = Number(raw);
    if (!/^\d+$/.test(raw.trim()) || !Number.isSafeInteger(n))
      throw new CliError(
        "cli::invalid-option",
        `${what} must be a non-negative integer, not ${JSON.stringify(raw)}`,
      );
    return n;
  };
}

export const errorMessage = (e: unknown): string =>
  isVmqError(e) ? `${e.message} [${e.code}]` : e instanceof Error ? e.message : String(e);

/** JSON on stdout, one document per call. */
export const printJson = (v: unknown): void => {
  process.stdout.write(`${JSON.stringify(v)}\n`);
};

export { table } from "./output.js";
