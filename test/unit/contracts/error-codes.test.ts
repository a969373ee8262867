/**
 * ERROR_CODES is closed and complete: every `area::reason` code the source uses (in any string
 * or template literal, comments aside) is in the table, every entry is used (or says why it is
 * reserved), and the table decides whether an error is retried.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, it } from "node:test";
import ts from "typescript";
import { ERROR_CODES, type ErrorCodeInfo } from "../../../src/contracts/index.js";
import { HypervisorError } from "../../../src/hypervisor/index.js";
import { receivedCode, toVmqError, VmqError } from "../../../src/lib/errors.js";

const ROOT = join(import.meta.dirname, "..", "..", "..");
const SRC = join(ROOT, "src");
/** The table's own files: their literals are the table, not uses of it. */
const TABLE_FILES = new Set(
  ["error-codes.ts", "error-codes-hypervisor.ts"].map((f) => join(SRC, "contracts", f)),
);
/** Prose that names the shape of a code, not a code (a schema's description). */
const PLACEHOLDERS = new Set(["area::reason"]);
const CODE = /\b[a-z][a-z0-9]*(?:-[a-z0-9]+)*::[a-z][a-z0-9]*(?:-[a-z0-9]+)*\b/g;

interface Use {
  code: string;
  where: string;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory()
      ? sourceFiles(join(dir, e.name))
      : e.name.endsWith(".ts")
        ? [join(dir, e.name)]
        : [],
  );
}

/** Codes in string and template literals; `built` lists codes put together at runtime. */
function scan(file: string): { uses: Use[]; built: string[] } {
  const text = readFileSync(file, "utf8");
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  const uses: Use[] = [];
  const built: string[] = [];
  const where = (n: ts.Node) =>
    `${relative(ROOT, file)}:${sf.getLineAndCharacterOfPosition(n.getStart(sf)).line + 1}`;
  const literal = (n: ts.Node, s: string) => {
    for (const m of s.matchAll(CODE))
      if (!PLACEHOLDERS.has(m[0])) uses.push({ code: m[0], where: where(n) });
  };
  const visit = (n: ts.Node): void => {
    if (ts.isStringLiteral(n) || ts.isNoSubstitutionTemplateLiteral(n)) literal(n, n.text);
    else if (ts.isTemplateExpression(n)) {
      literal(n, n.head.text);
      if (/[a-z0-9-]::$/.test(n.head.text)) built.push(`${where(n)}: ${n.getText(sf)}`);
      for (const span of n.templateSpans) {
        literal(span, span.literal.text);
        if (/^::[a-z]/.test(span.literal.text)) built.push(`${where(n)}: ${n.getText(sf)}`);
      }
    }
    ts.forEachChild(n, visit);
  };
  visit(sf);
  return { uses, built };
}

const table: Record<string, ErrorCodeInfo> = ERROR_CODES;
const files = sourceFiles(SRC).filter((f) => !TABLE_FILES.has(f));
const scans = files.map(scan);
const uses = scans.flatMap((s) => s.uses);

describe("ERROR_CODES: one closed table", () => {
  it("scans the source (sanity: it finds codes of several areas)", () => {
    const areas = new Set(uses.map((u) => u.code.split("::")[0]));
    for (const a of ["command", "hypervisor", "propolis", "qemu", "nats", "cli"])
      assert.ok(areas.has(a), `found codes of ${a}`);
  });

  it("holds every code used anywhere in src", () => {
    const missing = uses.filter((u) => !Object.hasOwn(table, u.code));
    assert.deepEqual(
      missing.map((u) => `${u.code} (${u.where})`),
      [],
      "codes used in src but missing from src/contracts/error-codes.ts",
    );
  });

  it("has no code built at runtime (a template cannot be checked against the table)", () => {
    assert.deepEqual(
      scans.flatMap((s) => s.built),
      [],
    );
  });

  it("has no entry that nothing uses, unless it says why it is reserved", () => {
    const used = new Set(uses.map((u) => u.code));
    const unused = Object.entries(table)
      .filter(([code, info]) => !used.has(code) && info.reserved === undefined)
      .map(([code]) => code);
    assert.deepEqual(unused, [], "table entries no source file uses");
  });

  it("gives every code a hint a person can act on", () => {
    for (const [code, info] of Object.entries(table)) {
      assert.match(code, /^[a-z][a-z0-9-]*::[a-z][a-z0-9-]*$/, code);
      assert.equal(typeof info.retryable, "boolean", code);
      assert.ok(info.hint.length >= 15, `${code}: hint too short`);
      assert.match(info.hint, /[.?]$/, `${code}: the hint is a sentence`);
    }
  });
});

describe("VmqError takes retryable and hint from the table", () => {
  it("defaults both from the code", () => {
    const t = new HypervisorError("hypervisor::timeout", "slow");
    assert.equal(t.retryable, true);
    assert.equal(t.hint, ERROR_CODES["hypervisor::timeout"].hint);
    assert.equal(new VmqError("hypervisor::stop-timeout", "stubborn").retryable, false);
    assert.equal(toVmqError(new Error("boom")).code, "internal::unexpected");
    assert.equal(toVmqError(new Error("boom")).retryable, false);
  });

  it("lets a documented exception override the table", () => {
    assert.equal(new VmqError("hypervisor::timeout", "x", { retryable: false }).retryable, false);
  });

  it("keeps a code received from the wire as sent, not retried when unknown", () => {
    const e = new VmqError(receivedCode("future::thing"), "from a newer worker");
    assert.equal(e.code, "future::thing");
    assert.equal(e.retryable, false);
    assert.equal(e.hint, undefined);
    const known = new VmqError(receivedCode("nats::timeout"), "from a worker");
    assert.equal(known.retryable, true);
  });

  it("refuses, at compile time, a code that is not in the table", () => {
    // @ts-expect-error -- "nope::nothing" is not a code of ERROR_CODES
    const e = new VmqError("nope::nothing", "x");
    // @ts-expect-error -- nor may a backend raise a code of another area
    const h = new HypervisorError("cli::invalid-option", "x");
    assert.ok(e && h);
  });
});
