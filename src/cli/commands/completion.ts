import type { Command, CommandUnknownOpts } from "@commander-js/extra-typings";

/** A command of the tree as completion sees it: its name, help line, flags and subcommands. */
interface Node {
  name: string;
  description: string;
  flags: { long: string; description: string }[];
  children: Node[];
}

function tree(cmd: CommandUnknownOpts): Node {
  return {
    name: cmd.name(),
    description: cmd.description(),
    flags: [
      ...cmd.options.flatMap((o) => (o.long ? [{ long: o.long, description: o.description }] : [])),
      { long: "--help", description: "display help for command" },
    ],
    children: cmd.commands.map(tree),
  };
}

/** Words safe inside single quotes in every shell here: flags and names are [a-z0-9-]. */
const word = (s: string): string => s.replace(/[^A-Za-z0-9_.-]/g, "");
/** A description inside fish's single quotes. */
const fishText = (s: string): string => s.replace(/\\/g, "\\\\").replace(/'/g, "\\'");

/**
 * bash: the first word completes to a command; after it, its subcommands and flags. The lists
 * are baked in from the command tree, so the script needs nothing but bash.
 */
function bash(root: Node): string {
  const cases = root.children
    .map((c) => {
      const words = [...c.children.map((s) => s.name), ...c.flags.map((f) => f.long)].map(word);
      const sub = c.children
        .map(
          (s) => `      ${word(s.name)}) opts='${s.flags.map((f) => word(f.long)).join(" ")}' ;;`,
        )
        .join("\n");
      const nested = c.children.length
        ? `\n    if [ "$COMP_CWORD" -gt 2 ]; then\n      case "\${COMP_WORDS[2]}" in\n${sub}\n      esac\n    fi`
        : "";
      return `    ${word(c.name)})\n    opts='${words.join(" ")}'${nested} ;;`;
    })
    .join("\n");
  return `# vmq completion for bash: source <(vmq completion bash), or save it under
# /etc/bash_completion.d/vmq
_vmq() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" opts
  if [ "$COMP_CWORD" -le 1 ]; then
    COMPREPLY=( $(compgen -W '${root.children.map((c) => word(c.name)).join(" ")} --help --version' -- "$cur") )
    return
  fi
  case "\${COMP_WORDS[1]}" in
${cases}
    *) opts='' ;;
  esac
  COMPREPLY=( $(compgen -W "$opts" -- "$cur") )
}
complete -o default -F _vmq vmq
`;
}

/** zsh: its bash compatibility layer runs the bash function (one source of truth). */
function zsh(root: Node): string {
  return `#compdef vmq
# vmq completion for zsh: source <(vmq completion zsh), or save it as _vmq on your fpath
autoload -U +X bashcompinit && bashcompinit
${bash(root).split("\n").slice(2).join("\n")}`;
}

/** fish: one `complete` line per command and per flag, with their help texts. */
function fish(root: Node): string {
  const lines = [
    "# vmq completion for fish: vmq completion fish > ~/.config/fish/completions/vmq.fish",
    "complete -c vmq -f",
  ];
  for (const c of root.children) {
    lines.push(
      `complete -c vmq -n '__fish_use_subcommand' -a '${word(c.name)}' -d '${fishText(c.description)}'`,
    );
    for (const s of c.children)
      lines.push(
        `complete -c vmq -n '__fish_seen_subcommand_from ${word(c.name)}' -a '${word(s.name)}' -d '${fishText(s.description)}'`,
      );
    for (const f of [...c.flags, ...c.children.flatMap((s) => s.flags)])
      lines.push(
        `complete -c vmq -n '__fish_seen_subcommand_from ${word(c.name)}' -l '${word(f.long.slice(2))}' -d '${fishText(f.description)}'`,
      );
  }
  return `${[...new Set(lines)].join("\n")}\n`;
}

const SHELLS = { bash, zsh, fish } as const;

/** vmq completion bash|zsh|fish: prints a completion script made from the command tree. */
export function registerCompletion(program: Command): void {
  program
    .command("completion")
    .description("Print a shell completion script (bash, zsh or fish)")
    .argument("<shell>", "bash | zsh | fish")
    .addHelpText(
      "after",
      '\nExamples:\n  source <(vmq completion bash)\n  vmq completion zsh > "${fpath[1]}/_vmq"\n  vmq completion fish > ~/.config/fish/completions/vmq.fish\n',
    )
    .action((shell: string) => {
      const make = SHELLS[shell as keyof typeof SHELLS];
      if (!make) program.error(`unknown shell ${JSON.stringify(shell)} (bash, zsh or fish)`);
      process.stdout.write(make(tree(program)));
    });
}
