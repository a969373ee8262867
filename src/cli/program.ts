/* The vmq command tree, built apart from main.ts so tests can walk it without running it. */
import { Command, type CommandUnknownOpts } from "@commander-js/extra-typings";
import { oneLine } from "./errors.js";
import { registerWorker } from "./commands/worker.js";
import { registerSchemas } from "./commands/schemas.js";
import { registerLifecycle } from "./commands/lifecycle.js";
import { registerInspect } from "./commands/inspect.js";
import { registerDescribe } from "./commands/describe.js";
import { registerCancel } from "./commands/cancel.js";
import { registerUi } from "./commands/ui.js";
import { registerEvents } from "./commands/events.js";
import { registerConsole } from "./commands/console.js";
import { registerReplay } from "./commands/replay.js";
import { registerDlq } from "./commands/dlq.js";
import { registerImages } from "./commands/images.js";
import { registerEvacuate } from "./commands/evacuate.js";
import { registerMove } from "./commands/move.js";
import { registerPermissions } from "./commands/permissions.js";
import { registerContext } from "./commands/context.js";
import { registerCheck } from "./commands/check.js";
import { registerCompletion } from "./commands/completion.js";
import { EXIT_CODES_HELP } from "./connection.js";
import { VERSION } from "../worker/services/heartbeat.js";

/** Every command of `vmq`, with its flags, help texts and usage-error behaviour. */
export function buildProgram(): Command {
  const program = new Command("vmq")
    .description("vmq: an event-sourced NATS JetStream worker that manages the VMs of a host")
    .version(VERSION)
    // Usage errors: one readable line ending in a pointer to --help, then exit 2 (below).
    // Subcommands inherit these settings, so they are set before any is added. commander writes
    // the message (outputError, left without its newline) and then showHelpAfterError's text,
    // which each command sets below to its own " — hint: ..." ending the same line.
    .exitOverride()
    .configureOutput({
      outputError: (str, write) =>
        write(`vmq: ${oneLine(str.replace(/^error: /, ""))} [cli::usage]`),
    })
    .addHelpText("after", EXIT_CODES_HELP);
  registerWorker(program);
  registerSchemas(program);
  registerLifecycle(program);
  registerInspect(program);
  registerDescribe(program);
  registerCancel(program);
  registerUi(program);
  registerEvents(program);
  registerConsole(program);
  registerReplay(program);
  registerDlq(program);
  registerImages(program);
  registerMove(program);
  registerEvacuate(program);
  registerPermissions(program);
  registerContext(program);
  registerCheck(program);
  registerCompletion(program); // last: it describes the commands above

  const usageHint = (cmd: CommandUnknownOpts): void => {
    const path: string[] = [];
    for (let c: CommandUnknownOpts | null = cmd; c; c = c.parent) path.unshift(c.name());
    cmd.showHelpAfterError(` — hint: see ${path.join(" ")} --help for the usage`);
    cmd.commands.forEach(usageHint);
  };
  usageHint(program);
  return program;
}
