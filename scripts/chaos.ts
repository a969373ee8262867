// npm run chaos [-- --vms 40 --minutes 5 --p 0.02]: the crash-chaos run longer than the test
// suite's, with a summary table (commands sent, outcomes, duplicates suppressed, lost = 0, kills
// per step). One worker is first killed at each step in turn, then every step has probability p.
import { parseArgs } from "node:util";
import { COMMAND_FAILPOINTS as FAILPOINTS } from "../src/lib/failpoints.js";
import { runChaos } from "../test/helpers/chaos.js";

const { values } = parseArgs({
  options: {
    vms: { type: "string", default: "40" },
    minutes: { type: "string", default: "5" },
    p: { type: "string", default: "0.02" },
  },
});
const p = values.p;
const s = await runChaos({
  vms: Number(values.vms),
  failpoints: FAILPOINTS.map((f) => `${f}=${p}`).join(","),
  deadlineMs: Number(values.minutes) * 60_000,
  log: (l) => console.error(l),
});
const rows: [string, string | number][] = [
  ["commands sent", s.commandsSent],
  ["outcomes", s.outcomes],
  ["lost", s.lost],
  ["commands with two outcomes", s.duplicateOutcomes],
  ["redeliveries suppressed as duplicates", s.duplicatesSuppressed],
  ["worker crashes (SIGKILL) and restarts", s.restarts],
  ...FAILPOINTS.map((f): [string, number] => [`killed at ${f}`, s.kills[f]]),
  ["deaths without a failpoint", s.otherDeaths],
  ["scheduled kills that did not fire", s.scheduleNotFired.join(", ") || 0],
  ["intents pending past their deadline", s.pendingPastDeadline],
  ["double backend effects", s.doubleEffects.length],
  ["successes missing from the backend call log", s.missingEffects.length],
  ["view entries differing from a replay", s.viewMismatches.length],
  ["VMs whose commands took effect out of order", s.outOfOrder.length],
  ["seconds", (s.ms / 1000).toFixed(1)],
];
console.log("\n| measure | value |\n| --- | --- |");
for (const [k, v] of rows) console.log(`| ${k} | ${v} |`);
console.log("\noutcomes by type:", JSON.stringify(s.outcomeTypes));
const ok =
  s.lost === 0 &&
  s.duplicateOutcomes === 0 &&
  s.pendingPastDeadline === 0 &&
  s.doubleEffects.length === 0 &&
  s.missingEffects.length === 0 &&
  s.viewMismatches.length === 0 &&
  s.outOfOrder.length === 0;
console.log(ok ? "\nchaos: all guarantees held" : "\nchaos: A GUARANTEE WAS BROKEN");
process.exit(ok ? 0 : 1);
