#!/usr/bin/env node
import { Command } from "commander";
import { isVmqError } from "../lib/errors.js";
import { registerWorker } from "./commands/worker.js";
import { registerSchemas } from "./commands/schemas.js";
import { VERSION } from "../worker/heartbeat.js";

const program = new Command("vmq")
  .description("vmq: an event-sourced NATS JetStream worker that manages the VMs of a host")
  .version(VERSION)
  .showHelpAfterError();
registerWorker(program);
registerSchemas(program);

try {
  await program.parseAsync(process.argv);
} catch (e) {
  // One readable line, the code, and a hint; exit codes: 2 usage/config, 1 anything else.
  if (isVmqError(e)) {
    process.stderr.write(`vmq: ${e.message} [${e.code}]${e.hint ? `\n  hint: ${e.hint}` : ""}\n`);
    process.exitCode = (e as { exitCode?: number }).exitCode ?? 1;
  } else {
    process.stderr.write(`vmq: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = 1;
  }
}
