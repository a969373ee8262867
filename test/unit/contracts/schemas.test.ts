import assert from "node:assert/strict";
import { readFile, readdir } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { Ajv2020 } from "ajv/dist/2020.js";
import addFormatsModule from "ajv-formats";
import { buildSchemas } from "../../../scripts/schemas.js";
import { VmSpec } from "../../../src/contracts/index.js";
import { contractExamples } from "../../helpers/wire-contract.js";

const root = join(import.meta.dirname, "..", "..", "..");
const schemasDir = join(root, "schemas");
const addFormats = addFormatsModule as unknown as (a: Ajv2020) => void;

async function listFiles(dir: string, base = ""): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(join(dir, base), { withFileTypes: true })) {
    const rel = base ? `${base}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...(await listFiles(dir, rel)));
    else out.push(rel);
  }
  return out.sort();
}

function ajvWithSchemas(): Ajv2020 {
  const ajv = new Ajv2020({ strict: false, allErrors: true });
  addFormats(ajv);
  for (const [path, content] of buildSchemas())
    if (path !== "index.json") ajv.addSchema(JSON.parse(content) as object, path);
  return ajv;
}

describe("schemas/", () => {
  it("is exactly what `npm run schemas` generates from src/contracts (not stale)", async () => {
    const expected = buildSchemas();
    const actual = await listFiles(schemasDir);
    assert.deepEqual(
      actual,
      [...expected.keys()].sort(),
      "schemas/ has other files than the generator writes: run npm run schemas",
    );
    for (const [path, content] of expected) {
      assert.equal(
        await readFile(join(schemasDir, path), "utf8"),
        content,
        `schemas/${path} is stale: run npm run schemas`,
      );
    }
  });

  it("index.json maps every subject pattern to files that exist", async () => {
    const index = JSON.parse(await readFile(join(schemasDir, "index.json"), "utf8")) as {
      subjects: { pattern: string; schemas?: Record<string, string>; reply?: string }[];
    };
    const files = new Set(await listFiles(schemasDir));
    assert.ok(index.subjects.some((s) => s.pattern === "<prefix>.cmd.<host>.<vmId>"));
    for (const s of index.subjects) {
      for (const f of [...Object.values(s.schemas ?? {}), ...(s.reply ? [s.reply] : [])])
        assert.ok(files.has(f), f);
    }
  });

  it("validates every JSON example of docs/wire-contract.md against its schema", () => {
    const examples = contractExamples();
    const ajv = ajvWithSchemas();
    for (const ex of examples) {
      const where = `docs/wire-contract.md:${ex.line}`;
      assert.ok(ex.schema, `${where}: no schema (a command or event type, or <!-- schema: -->)`);
      const validate = ajv.getSchema(ex.schema);
      assert.ok(validate, `${where}: schemas/${ex.schema} does not exist`);
      assert.ok(validate(ex.body), `${where} (${ex.schema}): ${JSON.stringify(validate.errors)}`);
    }
  });

  it("docs/wire-contract.md has an example of every schema in schemas/", () => {
    const shown = new Set(contractExamples().map((ex) => ex.schema));
    const missing = [...buildSchemas().keys()].filter((p) => p !== "index.json" && !shown.has(p));
    assert.deepEqual(missing, [], "schemas without a JSON example in docs/wire-contract.md");
  });

  it("rejects a malformed command with an error naming the field", () => {
    const validate = ajvWithSchemas().getSchema("commands/vm.prepare.v1.json");
    assert.ok(validate);
    const ok = validate({
      type: "vm.prepare",
      version: 1,
      commandId: "c1",
      vmId: "web-1",
      issuedAt: "2026-11-25T10:00:00Z",
      spec: { name: "w", imagePath: "/i", vcpus: 0, memoryMb: 256 },
    });
    assert.equal(ok, false);
    assert.ok(
      validate.errors?.some((e) => e.instancePath === "/spec/vcpus"),
      JSON.stringify(validate.errors),
    );
  });

  it("refuses .. segments and NUL in image paths, in zod and in the published schema alike", () => {
    const validate = ajvWithSchemas().getSchema("commands/vm.prepare.v1.json");
    assert.ok(validate);
    const cases: [string, boolean][] = [
      ["debian.qcow2", true],
      ["/var/lib/vmq/images/debian.qcow2", true],
      ["a..b/c...qcow2", true], // dots inside a name are not a segment
      ["../etc/shadow", false],
      ["images/../../etc/shadow", false],
      ["images/..", false],
      ["..", false],
      ["images\\..\\x", false],
      ["disk\u0000.qcow2", false],
    ];
    for (const [imagePath, allowed] of cases) {
      const spec = { name: "w", imagePath, vcpus: 1, memoryMb: 256 };
      assert.equal(VmSpec.safeParse(spec).success, allowed, `zod: ${JSON.stringify(imagePath)}`);
      const command = {
        type: "vm.prepare",
        version: 1,
        commandId: "c1",
        vmId: "web-1",
        issuedAt: "2026-11-25T10:00:00Z",
        spec,
      };
      assert.equal(validate(command), allowed, `schema: ${JSON.stringify(imagePath)}`);
    }
  });
});
