/**
 * docs/wire-contract.md as tests read it: the repository's own copy (never ../shared), and its
 * JSON examples with the schemas/ file each one is an example of.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { COMMAND_SCHEMAS, EVENT_SCHEMAS } from "../../src/contracts/index.js";

export const CONTRACT_PATH = join(import.meta.dirname, "..", "..", "docs", "wire-contract.md");

export const readContract = (): string => readFileSync(CONTRACT_PATH, "utf8");

export interface ContractExample {
  /** The schemas/ file it is an example of, e.g. `events/vm.started.v1.json`. */
  schema: string | undefined;
  body: unknown;
  /** Where its block starts in the contract (1-based), for messages. */
  line: number;
}

/**
 * Every ```json block of the contract. A `<!-- schema: <path> -->` line right before a block
 * names its schema; a block without one is a command or an event, found by its `type`.
 */
export function contractExamples(md: string = readContract()): ContractExample[] {
  const blocks = /(?:<!-- schema: (\S+) -->\s*\n)?```json\n([\s\S]*?)```/g;
  return [...md.matchAll(blocks)].map((m) => {
    const line = md.slice(0, m.index).split("\n").length;
    const body = JSON.parse(m[2] ?? "") as unknown;
    const type = (body as { type?: unknown }).type;
    const byType =
      typeof type !== "string"
        ? undefined
        : Object.hasOwn(COMMAND_SCHEMAS, type)
          ? `commands/${type}.v1.json`
          : Object.hasOwn(EVENT_SCHEMAS, type)
            ? `events/${type}.v1.json`
            : undefined;
    return { schema: m[1] ?? byType, body, line };
  });
}
