// Writes schemas/ from src/contracts. CI fails (test/unit/contracts/schemas.test.ts) on a diff.
import { mkdir, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { buildSchemas } from "./schemas.js";

const root = join(import.meta.dirname, "..", "schemas");
await rm(root, { recursive: true, force: true });
for (const [path, content] of buildSchemas()) {
  await mkdir(dirname(join(root, path)), { recursive: true });
  await writeFile(join(root, path), content);
}
console.log(`schemas: wrote ${buildSchemas().size} files to schemas/`);
