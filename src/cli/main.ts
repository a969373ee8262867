#!/usr/bin/env node
import { Command, CommanderError, type CommandUnknownOpts } from "@commander-js/extra-typings";
import { isVmqError } from "../lib/errors.js";
import { registerWorker } from "./commands/worker.js";
import { registerSchemas } from "./commands/schemas.js";
import { registerLifecycle } from "./commands/lifecycle.js";
import { registerInspect } from "./commands/inspect.js";
import { registerDescribe } from "./commands/describe.js";
import { registerEvents } from "./commands/events.js";
import { registerConsole } from "./commands/console.js";
import { registerReplay } from "./commands/replay.js";
import { registerDlq } from "./commands/dlq.js";
import { registerPermissions } from "./commands/permissions.js";
import { registerCompletion } from "./commands/completion.js";
import { EXIT_CODES_HELP } from "./connection.js";
import { VERSION } from "../worker/services/heartbeat.js";

/** JetStream's API error code for a stream that does not exist (JetStreamApiCodes.StreamNotFound). */
const STREAM_NOT_FOUND = 10059;

/** Every error is printed as ONE line: newlines inside a message or a hint are folded. */
const oneLine = (s: string): string => s.replace(/\s*\n\s*/g, " ").trim();

// `vmq events | head -1`: the reader went away. That is the reader's choice, not an error.
process.stdout.on("error", (e: NodeJS.ErrnoException) => {
  if (e.code === "EPIPE") process.exit(0);
  throw e;
});

/** Codes that mean the input was wrong (exit 2) although they are not config::/cli:: codes. */
const BAD_INPUT = new Set(["command::invalid", "command::too-large"]);

/** What nats.js says when the server has no JetStream or no stream answers under this prefix. */
const NOT_PROVISIONED = /jetstream (is )?not enabled|no responders|stream not found/i;

const program = new Command("vmq")
  .description("vmq: an event-sourced NATS JetStream worker that manages the VMs of a host")
  .version(VERSION)
  // Usage errors: one readable line ending in a pointer to --help, then exit 2 (below).
  // Subcommands inherit these settings, so they are set before any is added. commander writes
  // the message (outputError, left without its newline) and then showHelpAfterError's text,
  // which each command sets below to its own " — hint: ..." ending the same line.
  .exitOverride()
  .configureOutput({
    outputError: (str, write) => write(`vmq: ${oneLine(str.replace(/^error: /, ""))}`),
  })
  .addHelpText("after", EXIT_CODES_HELP);
registerWorker(program);
registerSchemas(program);
registerLifecycle(program);
registerInspect(program);
registerDescribe(program);
registerEvents(program);
registerConsole(program);
registerReplay(program);
registerDlq(program);
registerPermissions(program);
registerCompletion(program); // last: it describes the commands above

const usageHint = (cmd: CommandUnknownOpts): void => {
  const path: string[] = [];
  for (let c: CommandUnknownOpts | null = cmd; c; c = c.parent) path.unshift(c.name());
  cmd.showHelpAfterError(` — hint: see ${path.join(" ")} --help for the usage`);
  cmd.commands.forEach(usageHint);
};
usageHint(program);

try {
  await program.parseAsync(process.argv);
} catch (e) {
  // One readable line, `vmq: <message> [<code>] — hint: <hint>`; exit codes: 2 usage/config,
  // 1 anything else, and the operator commands' own (see EXIT_CODES_HELP).
  if (e instanceof CommanderError) {
    // commander has printed its message (or the help) already
    process.exitCode = e.exitCode === 0 ? 0 : 2;
  } else if (isVmqError(e)) {
    const hint = e.hint ? ` — hint: ${oneLine(e.hint)}` : "";
    process.stderr.write(`vmq: ${oneLine(e.message)} [${e.code}]${hint}\n`);
    process.exitCode =
      (e as { exitCode?: number }).exitCode ??
      (e.code.startsWith("config::") || BAD_INPUT.has(e.code) ? 2 : 1);
  } else if (
    (e as { code?: unknown }).code === STREAM_NOT_FOUND ||
    NOT_PROVISIONED.test(e instanceof Error ? e.message : "")
  ) {
    // Nothing was provisioned under this prefix yet, or the server runs without JetStream.
    process.stderr.write(
      `vmq: vmq is not provisioned on this server (${oneLine((e as Error).message)}) [nats::not-provisioned] — hint: start a vmq worker with this prefix on this NATS first (workers create the streams and buckets; the server needs JetStream, nats-server -js); check --prefix / VMQ_PREFIX and --nats\n`,
    );
    process.exitCode = 1;
  } else {
    process.stderr.write(`vmq: ${oneLine(e instanceof Error ? e.message : String(e))}\n`);
    process.exitCode = 1;
  }
}
