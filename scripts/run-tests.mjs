#!/usr/bin/env node
// Runs the test tiers with node's built-in runner (its closing summary is what CI reads).
// Usage: node scripts/run-tests.mjs [tier...]   tiers: unit conformance integration e2e
// Node 20 has no glob support in --test, so the files are collected here.
import { readdirSync, statSync } from "node:fs";
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

const concurrency = process.env.VMQ_TEST_CONCURRENCY ?? "4";
// Fixed argument array, no shell: node's own runner with tsx as the TypeScript loader.
const r = spawnSync(
  process.execPath,
  [
    "--import",
    "tsx",
    "--test",
    "--test-reporter=spec",
    `--test-concurrency=${concurrency}`,
    ...files,
  ],
  { stdio: "inherit" },
);
process.exit(r.status ?? 1);
