#!/usr/bin/env node
import { Command, type CommandUnknownOpts } from "@commander-js/extra-typings";
import { oneLine, reportError } from "./errors.js";
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
import { registerEvacuate } from "./commands/evacuate.js";
import { EXIT_CODES_HELP } from "./connection.js";
import { VERSION } from "../worker/services/heartbeat.js";

// `vmq events | head -1`: the reader went away. That is the reader's choice, not an error.
process.stdout.on("error", (e: NodeJS.ErrnoException) => {
  if (e.code === "EPIPE") process.exit(0);
  throw e;
});

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
registerEvacuate(program);
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
  process.exitCode = reportError(e);
}
