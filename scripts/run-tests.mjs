#!/usr/bin/env node
// Runs the test tiers with node's built-in runner.
// Usage: node scripts/run-tests.mjs [tier...]   tiers: unit conformance integration e2e
// Files that boot real guests (QEMU under TCG) run in a second phase with less parallelism, so
// they do not compete for the 2 cores with everything else; a combined closing line follows.
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnSync } from "node:child_process";

const ALL = ["unit", "conformance", "integration", "e2e"];
const tiers = process.argv.slice(2).length ? process.argv.slice(2) : ALL;
for (const t of tiers)
  if (!ALL.includes(t)) throw new Error(`unknown test tier ${t} (known: ${ALL.join(", ")})`);

const walk = (dir) =>
  readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) return walk(p);
    return /\.test\.ts$/.test(name) ? [p] : [];
  });
const files = tiers.flatMap((t) => {
  try {
    return walk(join("test", t)).sort();
  } catch {
    return [];
  }
});
if (files.length === 0) throw new Error(`no test files found for ${tiers.join(", ")}`);

const heavy = (f) => /qemu/.test(f);
const phases = [
  { files: files.filter((f) => !heavy(f)), concurrency: process.env.VMQ_TEST_CONCURRENCY ?? "4" },
  { files: files.filter(heavy), concurrency: "2" },
].filter((p) => p.files.length > 0);

const dir = mkdtempSync(join(tmpdir(), "vmq-tests-"));
const totals = { pass: 0, fail: 0, skipped: 0, cancelled: 0 };
let status = 0;
phases.forEach((p, i) => {
  const tap = join(dir, `phase-${i}.tap`);
  // Fixed argument array, no shell: node's own runner with tsx as the TypeScript loader.
  const r = spawnSync(
    process.execPath,
    [
      "--import",
      "tsx",
      "--test",
      `--test-concurrency=${p.concurrency}`,
      "--test-reporter=spec",
      "--test-reporter-destination=stdout",
      "--test-reporter=tap",
      `--test-reporter-destination=${tap}`,
      ...p.files,
    ],
    { stdio: "inherit" },
  );
  if (r.status !== 0) status = r.status ?? 1;
  const text = readFileSync(tap, "utf8");
  for (const k of Object.keys(totals))
    totals[k] += Number(new RegExp(`^# ${k} (\\d+)$`, "m").exec(text)?.[1] ?? 0);
});
rmSync(dir, { recursive: true, force: true });
console.log(
  `\nvmq: ${totals.pass} passed, ${totals.fail + totals.cancelled} failed, ${totals.skipped} skipped`,
);
process.exit(status);
