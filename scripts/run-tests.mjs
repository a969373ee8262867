#!/usr/bin/env node
// Runs the test tiers with node's built-in runner.
// Usage: node scripts/run-tests.mjs [tier...]   tiers: unit conformance integration e2e
// Files that boot real guests (QEMU under TCG) run in a second phase with less parallelism, so
// they do not compete for the 2 cores with everything else; a combined closing line follows.
// Tests that lack an input (../shared, QEMU; test/helpers/required.ts) fail under CI=true and
// otherwise skip, recording why under VMQ_SKIP_DIR: the summary prints each reason once.
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawn } from "node:child_process";
import { clearTimeout, setTimeout } from "node:timers";

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

const skipDir = mkdtempSync(join(tmpdir(), "vmq-skips-"));
const totals = { pass: 0, fail: 0, skipped: 0, cancelled: 0 };
let status = 0;
// A test that hangs must fail, not stall CI: every test gets a deadline (--test-timeout), and a
// whole phase past its budget is killed. No --test-force-exit: with process isolation it can
// drop the last verdicts of a file before the runner reads them, so the counts came out lower
// than what ran, at exit 0 (nodejs/node#64833; seen here: a file's last 6 tests vanished). So a
// test file must close what it opens; one that does not keeps its phase alive until the budget.
const FILE_TIMEOUT_MS = process.env.VMQ_TEST_TIMEOUT_MS ?? "900000";
const PHASE_BUDGET_MS = Number(process.env.VMQ_TEST_PHASE_BUDGET_MS ?? 45 * 60_000);
for (const [i, p] of phases.entries()) {
  // Fixed argument array, no shell: node's own runner with tsx as the TypeScript loader.
  const child = spawn(
    process.execPath,
    [
      "--import",
      "tsx",
      "--test",
      `--test-concurrency=${p.concurrency}`,
      `--test-timeout=${FILE_TIMEOUT_MS}`,
      "--test-reporter=spec",
      ...p.files,
    ],
    {
      stdio: ["inherit", "pipe", "inherit"],
      detached: true,
      env: { ...process.env, VMQ_SKIP_DIR: skipDir },
    },
  );
  // The spec reporter's closing lines ("ℹ pass N") give the counts.
  let text = "";
  child.stdout.on("data", (chunk) => {
    process.stdout.write(chunk);
    text = (text + chunk.toString("utf8")).slice(-4096);
  });
  const watchdog = setTimeout(() => {
    console.error(
      `\nvmq: test phase ${i + 1} exceeded ${PHASE_BUDGET_MS / 60_000} min; killing it`,
    );
    try {
      process.kill(-child.pid, "SIGKILL"); // the runner and every test file it started
    } catch {
      child.kill("SIGKILL");
    }
  }, PHASE_BUDGET_MS);
  const interrupt = () => process.kill(-child.pid, "SIGTERM"); // detached: pass Ctrl-C on
  process.once("SIGINT", interrupt);
  const code = await new Promise((resolve) =>
    child.on("exit", (c, sig) => resolve(c ?? (sig ? 1 : 0))),
  );
  clearTimeout(watchdog);
  process.off("SIGINT", interrupt);
  if (code !== 0) status = code || 1;
  if (!/^ℹ pass \d+$/m.test(text)) totals.fail += 1; // killed before it could report
  for (const k of Object.keys(totals))
    totals[k] += Number(new RegExp(`^ℹ ${k} (\\d+)$`, "m").exec(text)?.[1] ?? 0);
}
/** One line per distinct reason: how many tests it skipped, which checks they were, the fix. */
function skipReasons(dir) {
  const groups = new Map();
  for (const f of readdirSync(dir).sort()) {
    for (const line of readFileSync(join(dir, f), "utf8").split("\n")) {
      let record;
      try {
        record = JSON.parse(line);
      } catch {
        continue; // empty, or cut short by a killed test file
      }
      const { missing, needed, fix } = record;
      const key = `${missing}\0${fix}`;
      const g = groups.get(key) ?? { missing, fix, count: 0, needed: [] };
      g.count += 1;
      if (!g.needed.includes(needed)) g.needed.push(needed);
      groups.set(key, g);
    }
  }
  return [...groups.values()].map(
    (g) => `vmq: ${g.count} skipped: ${g.missing} (${g.needed.join(", ")}); ${g.fix}`,
  );
}
const reasons = skipReasons(skipDir);
rmSync(skipDir, { recursive: true, force: true });
console.log(reasons.length ? `\n${reasons.join("\n")}` : "");
console.log(
  `vmq: ${totals.pass} passed, ${totals.fail + totals.cancelled} failed, ${totals.skipped} skipped`,
);
process.exit(status);
