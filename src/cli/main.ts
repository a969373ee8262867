#!/usr/bin/env node
import { Command, CommanderError } from "commander";
import { isVmqError } from "../lib/errors.js";
import { registerWorker } from "./commands/worker.js";
import { registerSchemas } from "./commands/schemas.js";
import { registerLifecycle } from "./commands/lifecycle.js";
import { registerInspect } from "./commands/inspect.js";
import { registerEvents } from "./commands/events.js";
import { registerConsole } from "./commands/console.js";
import { registerReplay } from "./commands/replay.js";
import { registerDlq } from "./commands/dlq.js";
import { EXIT_CODES_HELP } from "./connection.js";
import { VERSION } from "../worker/heartbeat.js";

const program = new Command("vmq")
  .description("vmq: an event-sourced NATS JetStream worker that manages the VMs of a host")
  .version(VERSION)
  // Usage errors: one readable line and a pointer to --help, then exit 2 (below). Subcommands
  // inherit these settings, so they are set before any is added.
  .exitOverride()
  .configureOutput({
    outputError: (str, write) => write(`vmq: ${str.replace(/^error: /, "")}`),
  })
  .showHelpAfterError("  hint: add --help for the usage")
  .addHelpText("after", EXIT_CODES_HELP);
registerWorker(program);
registerSchemas(program);
registerLifecycle(program);
registerInspect(program);
registerEvents(program);
registerConsole(program);
registerReplay(program);
registerDlq(program);

try {
  await program.parseAsync(process.argv);
} catch (e) {
  // One readable line, the code, and a hint; exit codes: 2 usage/config, 1 anything else, and
  // the operator commands' own (see EXIT_CODES_HELP).
  if (e instanceof CommanderError) {
    // commander has printed its message (or the help) already
    process.exitCode = e.exitCode === 0 ? 0 : 2;
  } else if (isVmqError(e)) {
    process.stderr.write(`vmq: ${e.message} [${e.code}]${e.hint ? `\n  hint: ${e.hint}` : ""}\n`);
    process.exitCode = (e as { exitCode?: number }).exitCode ?? 1;
  } else {
    process.stderr.write(`vmq: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = 1;
  }
}
