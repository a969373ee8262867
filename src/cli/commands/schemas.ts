import { readFileSync, readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Command } from "@commander-js/extra-typings";
import { CliError } from "../errors.js";
import { examples } from "../output.js";

/** schemas/ ships with the package, next to dist/. */
const schemasDir = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "schemas");

export function registerSchemas(program: Command): void {
  program
    .command("schemas")
    .description(
      "List the JSON Schemas of the wire contract, or print one (e.g. vmq schemas commands/vm.start.v1.json)",
    )
    .argument("[file]", "schema file to print")
    .addHelpText(
      "after",
      examples(
        "vmq schemas",
        "vmq schemas commands/vm.start.v1.json",
        "vmq schemas records/vm-view.v1.json",
      ),
    )
    .action((file?: string) => {
      if (!file) {
        const index = readFileSync(join(schemasDir, "index.json"), "utf8");
        process.stdout.write(index);
        return;
      }
      const known = readdirSync(schemasDir, { recursive: true }).map(String);
      if (!known.includes(file))
        throw new CliError(
          "schemas::not-found",
          `no schema ${file}`,
          "vmq schemas lists them (an index); name one by its path, e.g. commands/vm.start.v1.json.",
        );
      process.stdout.write(readFileSync(join(schemasDir, file), "utf8"));
    });
}
