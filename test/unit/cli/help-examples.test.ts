import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { CommandUnknownOpts } from "@commander-js/extra-typings";
import { buildProgram } from "../../../src/cli/program.js";

/** Every command of the tree, with its path (`vmq dlq retry`). */
function walk(cmd: CommandUnknownOpts, path: string[] = []): [string, CommandUnknownOpts][] {
  const here = [...path, cmd.name()];
  return [[here.join(" "), cmd], ...cmd.commands.flatMap((c) => walk(c, here))];
}

/** What `<cmd> --help` prints, after-texts included (they are help events, not helpInformation). */
function helpOf(cmd: CommandUnknownOpts): string {
  let out = "";
  cmd.configureOutput({ writeOut: (s) => (out += s), writeErr: (s) => (out += s) });
  cmd.outputHelp();
  return out;
}

describe("--help of every command", () => {
  const all = walk(buildProgram() as unknown as CommandUnknownOpts).filter(([p]) => p !== "vmq");

  it("walks the whole tree (the verbs and their subcommands)", () => {
    const paths = all.map(([p]) => p);
    for (const p of ["vmq get", "vmq list", "vmq context add", "vmq dlq retry", "vmq check"])
      assert.ok(paths.includes(p), `${p} is registered`);
  });

  for (const [path, cmd] of all)
    it(`${path} --help ends with an Examples section naming the command`, () => {
      const help = helpOf(cmd);
      const at = help.lastIndexOf("\nExamples:\n");
      assert.ok(at >= 0, `${path} --help has no Examples section:\n${help}`);
      const tail = help.slice(at).split("\n").slice(2).filter(Boolean);
      const examples = tail.filter((l) => l.startsWith("  "));
      assert.ok(examples.length > 0, `${path}: at least one example line`);
      assert.deepEqual(tail, examples, `${path}: the help ends with its examples`);
      // An example of this very command (a parent's examples name its subcommands).
      const verb = path.split(" ").slice(1).join(" ");
      assert.ok(
        examples.some((l) => l.includes(`vmq ${verb}`) || l.includes(`vmq ${verb.split(" ")[0]}`)),
        `${path}: an example runs vmq ${verb}:\n${examples.join("\n")}`,
      );
    });
});
