import { Option } from "@commander-js/extra-typings";
import { stringify } from "yaml";
import { CliError } from "./errors.js";

/**
 * Output formats, as kubectl's -o: `table` (default, for people: relative ages, colour on a
 * terminal), `wide` (the table with more columns), `json` and `yaml` (the stable machine form:
 * the records exactly as the SDK returns them, absolute ISO times, no colour ever).
 */
export const FORMATS = ["table", "wide", "json", "yaml"] as const;
export type Format = (typeof FORMATS)[number];

/** `-o, --output <format>`; a value outside FORMATS is a usage error (exit 2). */
export const outputOption = (formats: readonly Format[] = FORMATS) =>
  new Option("-o, --output <format>", `output format: ${formats.join(" | ")}`).choices(formats);

/** The format asked for: -o, or --json (kept for scripts written before -o), or the table. */
export function formatOf(flags: { output?: string; json?: boolean }): Format {
  if (flags.json) return "json";
  return (flags.output as Format | undefined) ?? "table";
}

/** A document in the machine formats (one JSON document per line, or one YAML document). */
export function machine(format: "json" | "yaml", v: unknown): string {
  return format === "json" ? `${JSON.stringify(v)}\n` : `---\n${stringify(v)}`;
}

export const isMachine = (f: Format): f is "json" | "yaml" => f === "json" || f === "yaml";

/** Colour only on a terminal, and never with NO_COLOR set (https://no-color.org). */
export function colourOn(
  stream: { isTTY?: boolean } = process.stdout,
  env: NodeJS.ProcessEnv = process.env,
): boolean {
  return stream.isTTY === true && (env.NO_COLOR === undefined || env.NO_COLOR === "");
}

const SGR = { bold: 1, red: 31, green: 32, yellow: 33, dim: 2 } as const;
export type Tone = keyof typeof SGR;
export const paint = (on: boolean, tone: Tone | undefined, s: string): string =>
  on && tone ? `\u001b[${SGR[tone]}m${s}\u001b[0m` : s;

/** How a VM or host state reads at a glance. */
export function toneOf(state: string | undefined | null): Tone | undefined {
  switch (state) {
    case "running":
    case "alive":
    case "ok":
      return "green";
    case "failed":
    case "problem":
      return "red";
    case "destroyed":
    case "stopped":
      return "dim";
    case "suspended":
    case "draining":
    case "warn":
      return "yellow";
    default:
      return undefined;
  }
}

type Cell = string | number | undefined | null | { text: string; tone?: Tone | undefined };

/**
 * A plain text table: a header row and left-aligned columns. A cell may carry a tone, applied
 * after padding (escape codes would break the widths) and only when `colour` is on.
 */
export function table(
  headers: string[],
  rows: Cell[][],
  colour = false,
  minWidths: readonly number[] = [],
): string {
  const text = (c: Cell): string =>
    c === undefined || c === null ? "-" : typeof c === "object" ? c.text : String(c);
  const tone = (c: Cell): Tone | undefined =>
    c !== null && typeof c === "object" ? c.tone : undefined;
  const cells: { t: string; tone: Tone | undefined }[][] = [
    headers.map((h): { t: string; tone: Tone | undefined } => ({ t: h, tone: "bold" })),
    ...rows.map((r) => r.map((c) => ({ t: text(c), tone: tone(c) }))),
  ];
  const widths = headers.map((_, i) =>
    Math.max(minWidths[i] ?? 0, ...cells.map((r) => (r[i]?.t ?? "").length)),
  );
  return cells
    .map((r) =>
      r
        .map((c, i) => paint(colour, c.tone, i === r.length - 1 ? c.t : c.t.padEnd(widths[i] ?? 0)))
        .join("  ")
        .trimEnd(),
    )
    .join("\n")
    .concat("\n");
}

/** `3s`, `4m`, `2h`, `5d`: how long ago, as kubectl's AGE column ("-" for no time). */
export function age(iso: string | null | undefined, now: number = Date.now()): string {
  if (!iso) return "-";
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return "-";
  const s = Math.max(0, Math.floor((now - t) / 1000));
  if (s < 120) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 120) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h`;
  return `${Math.floor(h / 24)}d`;
}

const UNIT_MS = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/**
 * `--since`: a duration back from now (`90s`, `10m`, `2h`, `7d`) or an ISO time; the instant it
 * names. Anything else is a usage error (exit 2).
 */
export function sinceOption(raw: string, now: number = Date.now()): Date {
  const d = /^(\d{1,9})([smhd])$/.exec(raw.trim());
  if (d) return new Date(now - Number(d[1]) * UNIT_MS[d[2] as keyof typeof UNIT_MS]);
  const at = new Date(raw);
  if (/^\d{4}-\d\d-\d\d/.test(raw) && !Number.isNaN(at.getTime())) return at;
  throw new CliError(
    "cli::invalid-option",
    `--since must be a duration (90s, 10m, 2h, 7d) or an ISO time, not ${JSON.stringify(raw)}`,
  );
}

/** The `Examples:` section that ends every command's --help (a unit test walks them all). */
export const examples = (...lines: string[]): string =>
  `\nExamples:\n${lines.map((l) => `  ${l}`).join("\n")}\n`;
