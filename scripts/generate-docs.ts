// Writes the generated docs (configuration, events). A test fails when they are stale.
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { generatedDocs } from "./docs.js";

for (const [path, text] of generatedDocs()) {
  const file = join(import.meta.dirname, "..", path);
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, text);
  console.log(`docs: wrote ${path}`);
}
