#!/usr/bin/env node
import { reportError } from "./errors.js";
import { buildProgram } from "./program.js";

// `vmq events | head -1`: the reader went away. That is the reader's choice, not an error.
process.stdout.on("error", (e: NodeJS.ErrnoException) => {
  if (e.code === "EPIPE") process.exit(0);
  throw e;
});

const program = buildProgram();
try {
  await program.parseAsync(process.argv);
} catch (e) {
  process.exitCode = reportError(e);
}
