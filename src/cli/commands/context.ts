import { access, constants } from "node:fs/promises";
import { resolve } from "node:path";
import type { Command } from "@commander-js/extra-typings";
import { ContextStore, ContextSettings, PATH_KEYS, configDir, contextName } from "../contexts.js";
import { CliError } from "../errors.js";
import {
  colourOn,
  examples,
  formatOf,
  isMachine,
  machine,
  outputOption,
  table,
} from "../output.js";

const store = (): ContextStore => new ContextStore(configDir());

const EXAMPLES = `
Contexts live in $VMQ_CONFIG_DIR, else $XDG_CONFIG_HOME/vmq, else ~/.config/vmq
(contexts/<name>.json, mode 0600, and the selected name in "current").
Precedence for every connection setting: flag > environment variable > context > default.
${examples(
  "vmq context add prod --nats tls://nats.example:4222 --creds ~/.nkeys/prod.creds --select",
  'vmq context add lab --nats nats://10.0.0.5:4222 --prefix lab --description "lab rack"',
  "vmq context ls",
  "vmq context use lab",
  "vmq context show -o json",
  "vmq context rm lab",
  "vmq list --context prod          # one command against another context",
)}`;

/** vmq context add|use|ls|show|rm: named connection settings, like `nats context`. */
export function registerContext(program: Command): void {
  const ctx = program
    .command("context")
    .description("Save, select and list named connection settings (like nats context)")
    .addHelpText("after", EXAMPLES);

  ctx
    .command("add")
    .description("Save a context (replacing one of that name); files are stored as absolute paths")
    .argument("<name>", "1-64 letters, digits, '-' or '_'")
    .option("--nats <urls>", "NATS server URL(s), comma-separated")
    .option("--prefix <prefix>", "subject and stream prefix")
    .option("--creds <file>", "NATS credentials file (its path is stored, never its content)")
    .option("--nkey-seed <file>", "file holding an nkey seed (its path is stored)")
    .option("--user <user>", "NATS user (pass the password by --password or VMQ_PASSWORD)")
    .option("--tls-ca <file>", "CA certificate file")
    .option("--tls-cert <file>", "client certificate file")
    .option("--tls-key <file>", "client key file")
    .option("--description <text>", "a note shown by vmq context ls")
    .option("--select", "also make it the selected context")
    .addHelpText("after", EXAMPLES)
    .action(async (rawName, flags) => {
      const name = contextName(rawName);
      const given: Record<string, string | undefined> = {
        description: flags.description,
        nats: flags.nats,
        prefix: flags.prefix,
        creds: flags.creds,
        nkeySeed: flags.nkeySeed,
        user: flags.user,
        tlsCa: flags.tlsCa,
        tlsCert: flags.tlsCert,
        tlsKey: flags.tlsKey,
      };
      for (const k of PATH_KEYS) {
        const p = given[k];
        if (p === undefined) continue;
        given[k] = resolve(p);
        // A typo found now, not at the first connection through this context.
        await access(given[k], constants.R_OK).catch(() => {
          throw new CliError(
            "cli::unreadable-file",
            `cannot read ${given[k]} (given as the context's ${k})`,
          );
        });
      }
      const settings = Object.fromEntries(Object.entries(given).filter(([, v]) => v !== undefined));
      const parsed = ContextSettings.safeParse(settings);
      if (!parsed.success)
        throw new CliError(
          "cli::invalid-option",
          `invalid context settings: ${parsed.error.message}`,
        );
      const s = store();
      const file = await s.put(name, parsed.data);
      if (flags.select) await s.select(name);
      process.stdout.write(
        `context ${name} saved in ${file}${flags.select ? " and selected" : ""}\n`,
      );
    });

  ctx
    .command("use")
    .description("Select the context every command uses by default")
    .argument("<name>", "a saved context")
    .addHelpText("after", EXAMPLES)
    .action(async (rawName) => {
      const name = contextName(rawName);
      await store().select(name);
      process.stdout.write(`using context ${name}\n`);
    });

  ctx
    .command("ls")
    .alias("list")
    .description("List the saved contexts; the selected one is marked *")
    .addOption(outputOption(["table", "json", "yaml"]))
    .addHelpText("after", EXAMPLES)
    .action(async (flags) => {
      const s = store();
      const current = await s.current();
      const all = await Promise.all(
        (await s.names()).map(async (name) => ({
          name,
          current: name === current,
          ...(await s.get(name).catch(() => ({ description: "(unreadable context file)" }))),
        })),
      );
      const format = formatOf(flags);
      if (isMachine(format)) return void process.stdout.write(machine(format, all));
      if (all.length === 0)
        return void process.stdout.write(
          "no contexts yet: vmq context add <name> --nats <url> --select\n",
        );
      const colour = colourOn();
      process.stdout.write(
        table(
          ["", "NAME", "NATS", "PREFIX", "DESCRIPTION"],
          all.map((c) => [
            c.current ? { text: "*", tone: "green" } : "",
            c.current ? { text: c.name, tone: "bold" } : c.name,
            "nats" in c ? c.nats : undefined,
            "prefix" in c ? c.prefix : undefined,
            c.description,
          ]),
          colour,
        ),
      );
    });

  ctx
    .command("show")
    .description("Show a context's settings (default: the selected one)")
    .argument("[name]", "a saved context")
    .addOption(outputOption(["table", "json", "yaml"]))
    .addHelpText("after", EXAMPLES)
    .action(async (rawName, flags) => {
      const s = store();
      const name = rawName === undefined ? await s.current() : contextName(rawName);
      if (name === undefined)
        throw new CliError(
          "cli::unknown-context",
          "no context is selected",
          "Select one with vmq context use <name>, or name one: vmq context show <name>.",
        );
      const settings = await s.get(name);
      const format = formatOf(flags);
      if (isMachine(format))
        return void process.stdout.write(machine(format, { name, ...settings }));
      const rows = Object.entries({ name, ...settings });
      const w = Math.max(...rows.map(([k]) => k.length));
      process.stdout.write(rows.map(([k, v]) => `${`${k}:`.padEnd(w + 2)}${v}\n`).join(""));
    });

  ctx
    .command("rm")
    .alias("remove")
    .description("Delete a saved context (and unselect it if it was selected)")
    .argument("<name>", "a saved context")
    .addHelpText("after", EXAMPLES)
    .action(async (rawName) => {
      const name = contextName(rawName);
      await store().remove(name);
      process.stdout.write(`context ${name} removed\n`);
    });
}
