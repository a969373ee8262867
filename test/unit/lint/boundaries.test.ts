/**
 * The import boundaries of the README's architecture table have teeth: ESLint (with the
 * TypeScript resolver, without which import-x cannot see where "./x.js" goes) refuses a
 * forbidden import and accepts an allowed one.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ESLint } from "eslint";

const eslint = new ESLint({ cwd: new URL("../../..", import.meta.url).pathname });
const rulesHit = async (file: string, code: string): Promise<string[]> => {
  const [r] = await eslint.lintText(code, { filePath: file });
  return (r?.messages ?? []).map((m) => `${m.ruleId ?? "parse"}: ${m.message}`);
};

describe("lint: import boundaries", { timeout: 120_000 }, () => {
  it("refuses what a folder may not import, and allows what it may", async () => {
    const client = await rulesHit(
      "src/client/index.ts",
      'import { NoopBackend } from "../hypervisor/index.js";\nexport const x = NoopBackend;\n',
    );
    assert.ok(
      client.some((m) => m.startsWith("import-x/no-restricted-paths") && /src\/client/.test(m)),
      client.join("\n"),
    );
    const domain = await rulesHit(
      "src/domain/index.ts",
      'import { readFileSync } from "node:fs";\nexport const x = readFileSync;\n',
    );
    assert.ok(
      domain.some((m) => m.startsWith("no-restricted-imports")),
      domain.join("\n"),
    );
    const ok = await rulesHit(
      "src/client/index.ts",
      'import { VmEvent } from "../contracts/index.js";\nexport const x = VmEvent;\n',
    );
    assert.deepEqual(ok, []);
  });
});
