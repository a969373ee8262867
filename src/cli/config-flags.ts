import type { Command, OptionValues } from "@commander-js/extra-typings";
import { z } from "zod";
import { WorkerConfig, type WorkerConfigInput } from "../config/config.js";

/** Flag and environment variable names where they differ from the field name. */
const RENAMES: Record<string, { flag?: string; env?: string }> = {
  nats: { env: "VMQ_NATS_URL" },
  backends: { flag: "backend", env: "VMQ_BACKEND" },
};

export interface FlagSpec {
  key: keyof WorkerConfigInput;
  flag: string;
  env: string;
  kind: "string" | "number" | "boolean" | "list" | "map";
  description: string;
  default: unknown;
}

const kebab = (s: string): string => s.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

function kindOf(schema: z.ZodType): FlagSpec["kind"] {
  let s: z.ZodType = schema;
  while (s instanceof z.ZodOptional || s instanceof z.ZodDefault) s = s.unwrap() as z.ZodType;
  if (s instanceof z.ZodNumber) return "number";
  if (s instanceof z.ZodBoolean) return "boolean";
  if (s instanceof z.ZodArray) return "list";
  if (s instanceof z.ZodRecord) return "map";
  return "string";
}

/** One flag and one environment variable per config field, generated from the config schema. */
export function flagSpecs(): FlagSpec[] {
  return Object.entries(WorkerConfig.shape).map(([key, schema]) => {
    const r = RENAMES[key] ?? {};
    const flag = r.flag ?? kebab(key);
    const parsed = (schema as z.ZodType).safeParse(undefined);
    return {
      key: key as keyof WorkerConfigInput,
      flag,
      env: r.env ?? `VMQ_${flag.replace(/-/g, "_").toUpperCase()}`,
      kind: kindOf(schema as z.ZodType),
      description: (schema as z.ZodType).description ?? "",
      default: parsed.success ? parsed.data : undefined,
    };
  });
}

/** Which flags to add (default: all), and help texts that differ from the worker's. */
export interface FlagSelection {
  only?: readonly (keyof WorkerConfigInput)[];
  describe?: Partial<Record<keyof WorkerConfigInput, string>>;
}

const selected = (sel: FlagSelection): FlagSpec[] =>
  flagSpecs().filter((f) => !sel.only || sel.only.includes(f.key));

/**
 * Adds the selected config flags to a command. Their values are read by name from the parsed
 * options (configFromFlags), so the command's own option types stay as they were.
 */
export function addConfigFlags<A extends unknown[], O extends OptionValues>(
  cmd: Command<A, O>,
  sel: FlagSelection = {},
): Command<A, O> {
  for (const f of selected(sel)) {
    const shown =
      f.default === undefined || f.key === "host"
        ? ""
        : ` (default: ${Array.isArray(f.default) ? f.default.join(",") : JSON.stringify(f.default)})`;
    const description = sel.describe?.[f.key] ?? `${f.description}${shown}`;
    // A switch takes no value on the command line; its variable reads true/false, 1/0, yes/no.
    cmd.option(
      f.kind === "boolean" ? `--${f.flag}` : `--${f.flag} <value>`,
      `${description} [env ${f.env}]`,
    );
  }
  return cmd;
}

/** Flags win over environment variables, which win over defaults (applied by the schema). */
export function configFromFlags(
  opts: object,
  env: NodeJS.ProcessEnv = process.env,
  sel: FlagSelection = {},
): WorkerConfigInput {
  const out: Record<string, unknown> = {};
  // These flags were added by name (addConfigFlags), so they are read by name.
  const given = opts as Record<string, unknown>;
  for (const f of selected(sel)) {
    const camelFlag = f.flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
    const raw = given[camelFlag] ?? env[f.env];
    if (raw === undefined || raw === "") continue;
    const s = typeof raw === "string" ? raw : JSON.stringify(raw);
    out[f.key] =
      f.kind === "number"
        ? Number(s)
        : f.kind === "boolean"
          ? switchValue(s)
          : f.kind === "list"
            ? s
                .split(",")
                .map((x) => x.trim())
                .filter(Boolean)
            : f.kind === "map"
              ? Object.fromEntries(
                  s
                    .split(",")
                    .filter(Boolean)
                    .map((kv) => {
                      const [k = "", ...v] = kv.split("=");
                      return [k.trim(), v.join("=").trim()];
                    }),
                )
              : s;
  }
  return out;
}

/** A switch's value from the command line (true) or its variable; anything else is left for the schema to refuse. */
function switchValue(s: string): boolean | string {
  if (/^(true|1|yes|on)$/i.test(s)) return true;
  if (/^(false|0|no|off)$/i.test(s)) return false;
  return s;
}
