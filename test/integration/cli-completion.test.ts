import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { execa } from "execa";
import { runVmq } from "../helpers/cli.js";

describe("vmq completion (the built CLI's scripts, run by bash)", () => {
  let dir: string;
  let script: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "vmq-completion-"));
    const r = await runVmq(["completion", "bash"]);
    assert.equal(r.exitCode, 0, r.stderr);
    script = join(dir, "vmq.bash");
    await writeFile(script, r.stdout);
  });
  after(() => rm(dir, { recursive: true, force: true }));

  /** What bash offers for the words typed so far (the last one is being completed). */
  async function complete(...words: string[]): Promise<string[]> {
    // The words go in as positional parameters ("$@"), never spliced into the script's text.
    const r = await execa("bash", [
      "-c",
      'source "$1"; shift; COMP_WORDS=(vmq "$@"); COMP_CWORD=$#; _vmq; printf "%s\\n" "${COMPREPLY[@]}"',
      "bash",
      script,
      ...words,
    ]);
    return r.stdout.split("\n").filter(Boolean);
  }

  it("completes commands, their flags, and dlq's subcommands and their flags", async () => {
    assert.deepEqual(await complete("pre"), ["prepare"]);
    assert.deepEqual(await complete("list", "--a"), ["--all"]);
    assert.ok((await complete("stop", "--")).includes("--timeout-ms"));
    assert.ok(
      !(await complete("start", "--")).includes("--timeout-ms"),
      "start has no --timeout-ms",
    );
    assert.deepEqual(await complete("dlq", "r"), ["retry"]);
    assert.ok((await complete("dlq", "retry", "--")).includes("--payload"));
    assert.deepEqual(await complete("completion", "--h"), ["--help"]);
  });

  it("prints zsh and fish scripts made from the same tree, and refuses another shell", async () => {
    const zsh = await runVmq(["completion", "zsh"]);
    assert.equal(zsh.exitCode, 0, zsh.stderr);
    assert.match(zsh.stdout, /^#compdef vmq\n/);
    assert.match(zsh.stdout, /bashcompinit/);
    assert.match(zsh.stdout, /complete -o default -F _vmq vmq/);
    const fish = await runVmq(["completion", "fish"]);
    assert.equal(fish.exitCode, 0, fish.stderr);
    assert.match(fish.stdout, /^complete -c vmq -n '__fish_use_subcommand' -a 'prepare' -d '.+'$/m);
    assert.match(
      fish.stdout,
      /^complete -c vmq -n '__fish_seen_subcommand_from list' -l 'all' -d /m,
    );
    assert.match(fish.stdout, /-d 'This worker\\'s host id/, "quotes in help texts are escaped");
    const bad = await runVmq(["completion", "tcsh"]);
    assert.equal(bad.exitCode, 2);
    assert.match(bad.stderr, /^vmq: unknown shell "tcsh" \(bash, zsh or fish\)/);
  });
});
