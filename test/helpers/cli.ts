/**
 * The `vmq` binary as a user runs it: the built `dist/cli/main.js` (package.json's `bin.vmq`)
 * under plain `node`, never the sources through tsx. `npm test` and `npm run test:integration`
 * build first; a test file that imports this without a build fails at once, saying so.
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { execa, type Options } from "execa";

export const ROOT = join(import.meta.dirname, "..", "..");

const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as {
  bin: { vmq: string };
};

function builtCli(): string {
  const path = join(ROOT, pkg.bin.vmq);
  if (!existsSync(path))
    throw new Error(
      `the built vmq CLI ${path} is missing: run npm run build (npm test and npm run test:integration build first)`,
    );
  return path;
}

/** Absolute path of the built CLI (checked when this module is loaded). */
export const builtCliPath: string = builtCli();

/**
 * Runs `node dist/cli/main.js ...args` (an argument array, no shell) from the repository root.
 * Never rejects on a non-zero exit: check `exitCode`. `opts` are execa's (env, input, stdin,
 * timeout...), applied over these defaults.
 */
export function runVmq<O extends Options = Record<never, never>>(args: string[], opts?: O) {
  return execa(process.execPath, [builtCliPath, ...args], {
    reject: false,
    cwd: ROOT,
    ...opts,
  } as O & { reject: false; cwd: string });
}

/** `vmq: <message> [<code>]`, optionally ` — hint: <hint>`, as the whole of stderr: one line. */
export function assertOneLineError(stderr: string, message: RegExp): void {
  const all = stderr.split("\n").filter(Boolean);
  assert.equal(all.length, 1, `exactly one line on stderr:\n${stderr}`);
  assert.match(all[0] ?? "", /^vmq: \S.*$/);
  assert.match(all[0] ?? "", message);
}
