/**
 * Required in CI means required (test/helpers/required.ts): a test whose input is missing
 * fails under CI=true and skips otherwise, its reason recorded for scripts/run-tests.mjs,
 * whose summary prints it once, right before the closing line CI parses. Proved by running
 * test/fixtures/required/missing-input.fixture.ts, a test whose input is always missing.
 */
import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, rm, symlink, writeFile, mkdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { pathToFileURL } from "node:url";
import { execa } from "execa";

const ROOT = join(import.meta.dirname, "..", "..", "..");
const FIXTURE = join(ROOT, "test", "fixtures", "required", "missing-input.fixture.ts");
const REASON =
  "the fixture's input not found (required-in-CI fixture); " +
  "nothing to fix: this file proves test/helpers/required.ts";

/**
 * The environment without CI (the outer run may itself be under CI), without the outer test
 * runner's own variables (a child that sees NODE_TEST_CONTEXT reports to its parent, not as a
 * run of its own), plus `extra`.
 */
function env(extra: Record<string, string>): NodeJS.ProcessEnv {
  const { CI: _ci, VMQ_SKIP_DIR: _dir, NODE_TEST_CONTEXT: _ctx, ...rest } = process.env;
  return { ...rest, ...extra };
}

const runFixture = (extra: Record<string, string>) =>
  execa(process.execPath, ["--import", "tsx", "--test", "--test-reporter=spec", FIXTURE], {
    cwd: ROOT,
    env: env(extra),
    extendEnv: false,
    reject: false,
    timeout: 60_000,
  });

async function recorded(dir: string): Promise<unknown[]> {
  const lines: unknown[] = [];
  for (const f of await readdir(dir)) {
    for (const l of (await readFile(join(dir, f), "utf8")).split("\n"))
      if (l) lines.push(JSON.parse(l));
  }
  return lines;
}

describe("a test whose input is missing", { concurrency: true }, () => {
  let tmp: string;
  before(async () => {
    tmp = await mkdtemp(join(tmpdir(), "vmq-required-"));
  });
  after(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  for (const ci of ["true", "1"]) {
    it(`fails under CI=${ci}, saying what is required and how to fix it, and records no skip`, async () => {
      const dir = await mkdtemp(join(tmp, "ci-"));
      const r = await runFixture({ CI: ci, VMQ_SKIP_DIR: dir });
      assert.notEqual(r.exitCode, 0, r.stdout);
      assert.ok(r.stdout.includes(`required in CI: ${REASON}`), r.stdout);
      assert.match(r.stdout, /^ℹ fail 1$/m);
      assert.match(r.stdout, /^ℹ skipped 0$/m);
      assert.deepEqual(await recorded(dir), []);
    });
  }

  it("skips without CI, printing its reason and recording it in VMQ_SKIP_DIR", async () => {
    const dir = await mkdtemp(join(tmp, "local-"));
    const r = await runFixture({ VMQ_SKIP_DIR: dir });
    assert.equal(r.exitCode, 0, r.stdout);
    assert.ok(r.stdout.includes(`# ${REASON}`), r.stdout);
    assert.match(r.stdout, /^ℹ skipped 1$/m);
    assert.deepEqual(await recorded(dir), [
      {
        missing: "the fixture's input not found",
        needed: "required-in-CI fixture",
        fix: "nothing to fix: this file proves test/helpers/required.ts",
      },
    ]);
  });

  describe("through scripts/run-tests.mjs", () => {
    // A tree of its own with two test files (two processes) that both run the fixture.
    let tree: string;
    before(async () => {
      tree = await mkdtemp(join(tmp, "tree-"));
      await mkdir(join(tree, "test", "unit"), { recursive: true });
      await symlink(join(ROOT, "node_modules"), join(tree, "node_modules"), "dir");
      const body = `import ${JSON.stringify(pathToFileURL(FIXTURE).href)};\n`;
      for (const f of ["a.test.ts", "b.test.ts"])
        await writeFile(join(tree, "test", "unit", f), body);
    });
    const runTests = (extra: Record<string, string>) =>
      execa(process.execPath, [join(ROOT, "scripts", "run-tests.mjs"), "unit"], {
        cwd: tree,
        env: env(extra),
        extendEnv: false,
        reject: false,
        timeout: 120_000,
      });

    it("prints each skip reason once, with its count, right before the closing line; exit 0", async () => {
      const r = await runTests({});
      assert.equal(r.exitCode, 0, r.stdout);
      const tail = r.stdout.trimEnd().split("\n").slice(-2);
      assert.deepEqual(tail, [`vmq: 2 skipped: ${REASON}`, "vmq: 0 passed, 0 failed, 2 skipped"]);
    });

    it("fails the run under CI=true, with no skip reason line", async () => {
      const r = await runTests({ CI: "true" });
      assert.notEqual(r.exitCode, 0, r.stdout);
      assert.ok(r.stdout.includes(`required in CI: ${REASON}`), r.stdout);
      assert.match(r.stdout, /^vmq: 0 passed, 2 failed, 0 skipped$/m);
      assert.doesNotMatch(r.stdout, /^vmq: \d+ skipped:/m);
    });
  });
});
