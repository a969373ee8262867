/**
 * Required in CI means required. A test whose input is missing (the Propolis OpenAPI document
 * in ../shared beside the clone, QEMU and the guest tools, OVMF) calls
 * skipWhenMissing(t, missing):
 *  - under CI (env CI is "true" or "1") the test FAILS: "required in CI: <what>; <how to fix>";
 *  - otherwise it is skipped with that reason, and the reason is recorded, one JSON line in a
 *    file under $VMQ_SKIP_DIR (scripts/run-tests.mjs sets it and prints each distinct reason
 *    once in its summary). Without VMQ_SKIP_DIR the test is only skipped.
 * Each test file runs in its own process, hence a file per process rather than memory.
 */
import { appendFileSync, existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** Something a test needs and did not find. */
export interface MissingInput {
  /** What is missing, in the same words for every test that lacks it (the summary groups by it). */
  missing: string;
  /** What this test would have checked with it (listed in the summary). */
  needed: string;
  /** How to provide it. */
  fix: string;
}

export const SKIP_DIR_ENV = "VMQ_SKIP_DIR";

export function inCi(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.CI === "true" || env.CI === "1";
}

/** The reason a test gives, whether it fails (under CI) or skips. */
export function describeMissing(m: MissingInput): string {
  return `${m.missing} (${m.needed}); ${m.fix}`;
}

/**
 * True when the test must stop here because `missing` is set: it was skipped (and the reason
 * recorded). Under CI it throws instead, so the test fails. False when nothing is missing.
 */
export function skipWhenMissing(
  t: { skip: (message: string) => void },
  missing: MissingInput | undefined,
): boolean {
  if (!missing) return false;
  if (inCi()) throw new Error(`required in CI: ${describeMissing(missing)}`);
  t.skip(describeMissing(missing));
  const dir = process.env[SKIP_DIR_ENV];
  if (dir) {
    // One line per skipped test; scripts/run-tests.mjs reads these three fields.
    const { missing: what, needed, fix } = missing;
    const line = `${JSON.stringify({ missing: what, needed, fix })}\n`;
    appendFileSync(join(dir, `skips-${process.pid}.jsonl`), line);
  }
  return true;
}

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
/**
 * ../shared beside this clone: reference data never copied into it (the Propolis OpenAPI
 * document; the wire contract is the repository's own docs/wire-contract.md). VMQ_SHARED_DIR
 * overrides it for copies of the clone that live elsewhere.
 */
export const SHARED_DIR = process.env.VMQ_SHARED_DIR
  ? resolve(process.env.VMQ_SHARED_DIR)
  : resolve(REPO, "..", "shared");

/**
 * A file in ../shared (`rel`, e.g. "propolis/<document>.json"): its path, and what is missing
 * when it is not there (../shared itself, or only that file).
 */
export function sharedFile(rel: string, needed: string): { path: string; missing?: MissingInput } {
  const path = join(SHARED_DIR, rel);
  if (existsSync(path)) return { path };
  if (!existsSync(SHARED_DIR)) {
    const fix = "run from a checkout with ../shared beside it to include them";
    return { path, missing: { missing: "../shared not beside this clone", needed, fix } };
  }
  const fix = "update ../shared (or the path in the test)";
  return { path, missing: { missing: `../shared/${rel} not found`, needed, fix } };
}
