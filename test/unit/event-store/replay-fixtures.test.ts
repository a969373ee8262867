/**
 * Recorded event streams (test/fixtures/event-streams/*.jsonl, including superseded event
 * versions once they exist) replayed through the upcasters and the projection: a change that
 * breaks old history fails here. Regenerate the expectations only on purpose:
 * UPDATE_FIXTURES=1 node --import tsx --test test/unit/event-store/replay-fixtures.test.ts
 */
import assert from "node:assert/strict";
import { readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { replayVm, toView } from "../../../src/domain/index.js";
import { upcast } from "../../../src/event-store/upcasters.js";

const dir = join(import.meta.dirname, "..", "..", "fixtures", "event-streams");

function replayFile(file: string): Record<string, unknown> {
  const byVm = new Map<
    string,
    { host: string; events: { event: ReturnType<typeof upcast>; seq: number }[] }
  >();
  for (const line of readFileSync(join(dir, file), "utf8").split("\n")) {
    if (!line.trim()) continue;
    const { seq, event } = JSON.parse(line) as { seq: number; event: unknown };
    const e = upcast(event);
    const entry = byVm.get(e.vmId) ?? { host: e.host, events: [] };
    entry.events.push({ event: e, seq });
    byVm.set(e.vmId, entry);
  }
  const out: Record<string, unknown> = {};
  for (const [vmId, { host, events }] of [...byVm].sort(([a], [b]) => a.localeCompare(b))) {
    const vm = replayVm(vmId, host, events);
    out[vmId] = { view: toView(vm) ?? null, seenCommands: vm.seenCommands.size };
  }
  return out;
}

describe("recorded event streams replay to the same VM handles", () => {
  const files = readdirSync(dir).filter((f) => f.endsWith(".jsonl"));
  it("has fixtures to replay", () => assert.ok(files.length > 0));
  for (const file of files) {
    it(file, (t) => {
      const got = replayFile(file);
      const expectedFile = join(dir, file.replace(/\.jsonl$/, ".expected.json"));
      if (process.env.UPDATE_FIXTURES) {
        // Comparing the output with what was just written from it proves nothing: skip, loudly.
        writeFileSync(expectedFile, JSON.stringify(got, null, 2) + "\n");
        t.skip(`UPDATE_FIXTURES is set: wrote ${expectedFile}, compared nothing (review the diff)`);
        return;
      }
      const expected = JSON.parse(readFileSync(expectedFile, "utf8")) as unknown;
      assert.deepEqual(got, expected);
    });
  }
});
