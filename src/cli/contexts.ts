import { chmod, mkdir, readFile, readdir, rename, rm, writeFile } from "node:fs/promises";
import { homedir } from "node:os";
import { isAbsolute, join, resolve } from "node:path";
import { z } from "zod";
import { describeIssues } from "../contracts/index.js";
import { CliError } from "./errors.js";

/**
 * Named connection settings, like `nats context`: one JSON file per context under
 * `$VMQ_CONFIG_DIR` (else `$XDG_CONFIG_HOME/vmq`, else `~/.config/vmq`), in `contexts/<name>.json`,
 * and the selected one's name in `current`. Files are written 0600, the folder 0700. A context
 * holds URLs, a prefix, a user name and paths (creds, nkey seed, TLS files): never a secret's
 * content, and no password or token (pass those by flag or environment variable).
 */
export const ContextSettings = z
  .object({
    description: z.string().max(200).optional(),
    nats: z.string().min(1).optional(),
    prefix: z.string().min(1).optional(),
    creds: z.string().min(1).optional(),
    nkeySeed: z.string().min(1).optional(),
    user: z.string().min(1).optional(),
    tlsCa: z.string().min(1).optional(),
    tlsCert: z.string().min(1).optional(),
    tlsKey: z.string().min(1).optional(),
  })
  .strict();
export type ContextSettings = z.infer<typeof ContextSettings>;

/** The settings that name a file: stored as absolute paths, so any working directory reads them. */
export const PATH_KEYS = ["creds", "nkeySeed", "tlsCa", "tlsCert", "tlsKey"] as const;

const NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;

/** A context name: 1-64 letters, digits, '-' or '_' (it names a file, so nothing else). */
export function contextName(raw: string): string {
  if (!NAME.test(raw))
    throw new CliError(
      "cli::invalid-context",
      `invalid context name ${JSON.stringify(raw)}: use 1-64 letters, digits, '-' or '_', starting with a letter or digit`,
    );
  return raw;
}

/** Where contexts live (see above). */
export function configDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.VMQ_CONFIG_DIR) return resolve(env.VMQ_CONFIG_DIR);
  const xdg = env.XDG_CONFIG_HOME;
  return join(xdg && isAbsolute(xdg) ? xdg : join(homedir(), ".config"), "vmq");
}

export class ContextStore {
  constructor(readonly dir: string = configDir()) {}

  #file(name: string): string {
    return join(this.dir, "contexts", `${contextName(name)}.json`);
  }

  async names(): Promise<string[]> {
    const files = await readdir(join(this.dir, "contexts")).catch(() => [] as string[]);
    return files
      .filter((f) => f.endsWith(".json") && NAME.test(f.slice(0, -5)))
      .map((f) => f.slice(0, -5))
      .sort();
  }

  /** The context's settings; `cli::unknown-context` (exit 2) when there is none by that name. */
  async get(name: string): Promise<ContextSettings> {
    let raw: string;
    try {
      raw = await readFile(this.#file(name), "utf8");
    } catch {
      throw new CliError(
        "cli::unknown-context",
        `no context named ${JSON.stringify(name)} in ${join(this.dir, "contexts")}`,
        "List them with vmq context ls; add one with vmq context add <name> --nats <url>.",
      );
    }
    let json: unknown;
    try {
      json = JSON.parse(raw);
    } catch {
      json = undefined;
    }
    const r = ContextSettings.safeParse(json);
    if (!r.success)
      throw new CliError(
        "cli::invalid-context",
        `context ${name} (${this.#file(name)}) is not a valid context file${json === undefined ? "" : `: ${describeIssues(r.error)}`}`,
        `Rewrite it with vmq context add ${name} ... (it replaces the file).`,
      );
    return r.data;
  }

  /** Writes a context (replacing one of that name), 0600, atomically. */
  async put(name: string, settings: ContextSettings): Promise<string> {
    const file = this.#file(name);
    await mkdir(join(this.dir, "contexts"), { recursive: true, mode: 0o700 });
    await this.#write(file, `${JSON.stringify(settings, null, 2)}\n`);
    return file;
  }

  /** Deletes a context, even one whose file no longer parses. */
  async remove(name: string): Promise<void> {
    if (!(await this.names()).includes(contextName(name))) await this.get(name); // its error
    await rm(this.#file(name));
    if ((await this.current()) === name) await rm(join(this.dir, "current"), { force: true });
  }

  /** The selected context's name, or undefined when none is selected. */
  async current(): Promise<string | undefined> {
    const raw = await readFile(join(this.dir, "current"), "utf8").catch(() => "");
    const name = raw.trim();
    return name === "" ? undefined : name;
  }

  async select(name: string): Promise<void> {
    await this.get(name);
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    await this.#write(join(this.dir, "current"), `${name}\n`);
  }

  async #write(file: string, text: string): Promise<void> {
    const tmp = `${file}.${process.pid}.tmp`;
    await writeFile(tmp, text, { mode: 0o600 });
    await chmod(tmp, 0o600); // the umask may have narrowed nothing, but a reused name may differ
    await rename(tmp, file);
  }
}

/**
 * The settings of the context this invocation uses: `--context`, else `$VMQ_CONTEXT`, else the
 * selected one; none at all is fine (flags, environment and defaults apply as before).
 */
export async function activeContext(
  flag: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
  store = new ContextStore(configDir(env)),
): Promise<{ name: string; settings: ContextSettings } | undefined> {
  const name = flag ?? (env.VMQ_CONTEXT || undefined) ?? (await store.current());
  if (name === undefined) return undefined;
  return { name, settings: await store.get(contextName(name)) };
}
