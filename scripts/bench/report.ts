/** Turns the collected results into docs/benchmark.json and a Markdown report. */
import type { LatencyResult, ThroughputResult } from "./throughput.js";
import { churnGoals, churnMarkdown, type ChurnResult } from "./churn.js";
import { imagesGoal, imagesMarkdown, type ImagesResult } from "./images.js";
import type { ProfileResult } from "./profile.js";
import { qemuTable, type QemuResult } from "./qemu.js";
import { recoveryGoals, type RecoveryResult } from "./recovery.js";
import type { ScaleOutResult } from "./scale-out.js";
import { quantile, round, type MachineFacts } from "./stats.js";

export interface BenchResults {
  machine: MachineFacts;
  quick: boolean;
  sections: string[];
  sizes: Record<string, unknown>;
  durationMs: number;
  loadAverage: Record<string, [number, number, number]>;
  throughput: { baseline: ThroughputResult[]; vmq: ThroughputResult[] };
  latency: LatencyResult[];
  logs: ThroughputResult[];
  scaleOut: ScaleOutResult[];
  recovery?: RecoveryResult;
  profile: ProfileResult[];
  qemu?: QemuResult;
  images?: ImagesResult;
  churn?: ChurnResult;
  failures: { section: string; message: string }[];
}

export interface Goal {
  goal: string;
  target: string;
  measured: string;
  met: boolean | null;
  note?: string;
}

/** The median run (by commands/s) of each concurrency. */
export function medianBy(results: ThroughputResult[], c: number): ThroughputResult | undefined {
  const rs = results.filter((r) => r.concurrency === c).sort((a, b) => a.cmdPerSec - b.cmdPerSec);
  return rs[Math.floor((rs.length - 1) / 2)];
}

const range = (results: ThroughputResult[], c: number): string => {
  const v = results.filter((r) => r.concurrency === c).map((r) => r.cmdPerSec);
  return v.length > 1 ? ` (${Math.min(...v)}–${Math.max(...v)})` : "";
};

/**
 * vmq / baseline per repetition: the two runs of a repetition ran back to back on one server,
 * so a change in the machine's load between repetitions cancels out of their ratio.
 */
export function pairedRatios(r: BenchResults, c: number): number[] {
  const b = r.throughput.baseline.filter((x) => x.concurrency === c);
  const v = r.throughput.vmq.filter((x) => x.concurrency === c);
  const n = Math.min(b.length, v.length);
  const out: number[] = [];
  for (let i = 0; i < n; i++)
    out.push((v[i] as ThroughputResult).cmdPerSec / (b[i] as ThroughputResult).cmdPerSec);
  return out;
}

/** The headline ratio: the median of the paired ratios (their range beside it). */
export function ratioFor(r: BenchResults, c: number): { ratio: number; range: string } | undefined {
  const rs = pairedRatios(r, c).sort((a, b) => a - b);
  if (rs.length === 0) return undefined;
  const mid =
    rs.length % 2
      ? (rs[(rs.length - 1) / 2] as number)
      : ((rs[rs.length / 2 - 1] as number) + (rs[rs.length / 2] as number)) / 2;
  return {
    ratio: mid,
    range: rs.length > 1 ? `${pct(rs[0] as number)}–${pct(rs[rs.length - 1] as number)}` : "",
  };
}

export const concurrencies = (r: BenchResults): number[] =>
  [...new Set([...r.throughput.baseline, ...r.throughput.vmq].map((t) => t.concurrency))].sort(
    (a, b) => a - b,
  );

export function goals(r: BenchResults): Goal[] {
  const out: Goal[] = [];
  for (const c of [8, 64]) {
    const b = medianBy(r.throughput.baseline, c);
    const v = medianBy(r.throughput.vmq, c);
    const paired = ratioFor(r, c);
    if (!b || !v || !paired) continue;
    const n = pairedRatios(r, c).length;
    out.push({
      goal: `throughput at concurrency ${c}`,
      target: "≥ 90% of the baseline",
      measured:
        `${pct(paired.ratio)} (median of ${n} paired runs${paired.range ? `, ${paired.range}` : ""}; ` +
        `medians ${v.cmdPerSec} vs ${b.cmdPerSec} commands/s)`,
      met: paired.ratio >= 0.9,
    });
  }
  const l1 = r.latency.find((l) => l.system === "vmq" && l.concurrency === 1);
  const b1 = r.latency.find((l) => l.system === "baseline" && l.concurrency === 1);
  if (l1)
    out.push({
      goal: "command-to-outcome p99 at concurrency 1",
      target: "< 5 ms",
      measured:
        `${l1.p99} ms (p50 ${l1.p50} ms; ${l1.count.toLocaleString("en")} samples` +
        `${l1.p99ByRep && l1.p99ByRep.length > 1 ? `, per repetition ${l1.p99ByRep.join(" / ")} ms` : ""}` +
        `${b1 ? `; the baseline's ${b1.p99} ms` : ""})`,
      met: l1.p99 < 5,
    });
  if (r.recovery) out.push(...recoveryGoals(r.recovery));
  const one = r.scaleOut.find((s) => s.workers === 1);
  for (const s of r.scaleOut.filter((x) => x.workers > 1)) {
    if (!one) break;
    const ratio = s.cmdPerSec / one.cmdPerSec;
    out.push({
      goal: `scale-out, ${s.workers} workers`,
      target: `close to linear (≥ 85%: ≥ ${round(0.85 * s.workers, 2)}x one worker)`,
      measured: `${round(ratio, 2)}x (${s.cmdPerSec} vs ${one.cmdPerSec} commands/s)`,
      met: ratio >= 0.85 * s.workers,
    });
  }
  if (r.images) out.push(imagesGoal(r.images));
  if (r.churn) out.push(...churnGoals(r.churn));
  return out;
}

const pct = (x: number): string => `${round(100 * x, 1)}%`;
const yes = (m: boolean | null): string => (m === null ? "n/a" : m ? "**met**" : "**not met**");

/** What the hot functions of a profile are, in the words of this code base. */
const EXPLAIN: Record<string, string> = {
  RequestError:
    'nats.js (nats-core 3.x) builds a `RequestError("cancelled")`, stack trace and all, when it cleans up every request, also one that succeeded (`RequestOne.cancel`); `noAsyncTraces: true` removes only the other one. The baseline pays it per publish; the vmq worker publishes through its own `JetStreamPublisher` and does not',
  TimeoutError:
    "nats.js builds the timeout Error of every request up front (stack trace included) for the same async-trace option",
  "(garbage collector)": "V8 garbage collection (per-command objects, events, strings, promises)",
  "(idle)": "the event loop waiting for the server (PubAcks)",
  "(program)": "V8 and native code outside JavaScript",
  writeBuffer:
    "socket writes (the kernel's loopback TCP work is counted here too); vmq sends one event-loop turn's publishes and acks in one write",
  writev: "socket writes",
  runMicrotasks: "promise continuations",
  append: "JetStreamEventStore.append: JSON.stringify of the event and the publish call",
  "#onReply": "JetStreamPublisher: a PubAck arrives (JSON.parse, settle the publish)",
  base: "the fields every event has (domain)",
  parse: "NATS protocol parser (nats.js)",
  encode: "TextEncoder.encode of payloads",
  parseCommand: "command validation (JSON.parse + zod schema)",
  succeeded: "building the outcome event (domain)",
  _publish: "nats.js publish",
  publish: "nats.js publish",
  createAbortSignal:
    "an AbortController (nats.js per request; vmq's deadline slots, shared by commands)",
  any: "AbortSignal.any (the command's deadline signal combined with the drain signal)",
  evolve: "the fold that applies an event to the VM (domain)",
  decide: "the decider (domain)",
  stringify: "JSON.stringify",
  toView: "building the vms view entry",
};

function table(head: string[], rows: (string | number)[][]): string {
  return [
    `| ${head.join(" | ")} |`,
    `|${head.map(() => "---").join("|")}|`,
    ...rows.map((r) => `| ${r.join(" | ")} |`),
  ].join("\n");
}

export function markdown(r: BenchResults): string {
  const m = r.machine;
  const L: string[] = [];
  L.push("# vmq benchmark");
  L.push("");
  L.push(
    `Generated by \`npm run bench${r.quick ? " -- --quick" : ""}\` on ${m.date} in ${round(r.durationMs / 1000)} s. ` +
      "Everything below was measured in this one run on this one machine; all traffic is on loopback " +
      "to private `nats-server -js` instances (file storage, one fresh server per section, a fresh prefix per measurement; baseline and vmq throughput runs alternate on one server).",
  );
  if (r.quick)
    L.push(
      "\n**This is a `--quick` smoke run: counts are small and figures are indicative only.**",
    );
  L.push("");
  L.push(
    table(
      ["machine", ""],
      [
        ["CPU", `${m.cores} cores (${m.cpuModel})`],
        ["memory", `${m.memoryGiB} GiB`],
        ["OS", m.platform],
        ["node", m.node],
        ["nats-server", m.natsServer],
        ["/dev/kvm", m.kvm ? "present" : "absent"],
        ["load average at start (1/5/15 min)", m.loadAverageAtStart.join(" / ")],
      ],
    ),
  );
  L.push("");
  L.push(
    "The machine is a virtual machine on a shared host (2 cores for nats-server, the worker and " +
      "the load generator), so figures are noisy from run to run (load average at the start of " +
      "each section: " +
      Object.entries(r.loadAverage)
        .map(([s, l]) => `${s} ${l[0]}`)
        .join(", ") +
      "; each section first waits, up to 30 s, for a second in which the machine is under 10% busy, " +
      "so the one before it has finished exiting). Throughput figures are the median of the repetitions; the range is shown beside them. " +
      "Each repetition runs the baseline and vmq back to back on one server (which goes first alternates), and each " +
      "measurement's streams are deleted after it; the vmq / baseline ratio is the median of the repetitions' own ratios.",
  );

  const g = goals(r);
  if (g.length) {
    L.push("\n## Goals\n");
    L.push(
      table(
        ["goal", "target", "measured", "result"],
        g.map((x) => [x.goal, x.target, x.measured, yes(x.met)]),
      ),
    );
  }

  if (r.throughput.baseline.length || r.throughput.vmq.length) {
    L.push("\n## Throughput: baseline vs vmq\n");
    L.push(
      "Commands are pre-loaded (VM commands interleaved: `vm.prepare` once per VM, then `vm.start`/`vm.stop` alternately), then the consumer starts. " +
        "**commands/s** = commands / (first stored event → last stored event of the events stream, from the stream's own timestamps); " +
        "*wall* = from starting the consumer (baseline) or calling `worker.start()` (vmq, includes its provisioning check) until the last outcome.",
    );
    L.push("");
    L.push(
      "- **Baseline**: the smallest correct program for the same durable work (`scripts/bench/baseline.ts`): a durable pull consumer " +
        "on `X.cmd.<host>.>` of a limits-retention command stream (the worker's settings: explicit ack, `max_ack_pending` 2048, pull batch = the worker's), " +
        "one lane per VM (strict arrival order, one command at a time per VM, at most *c* lanes running, as the worker does), each command: " +
        "`JSON.parse`, publish an intent then an outcome to `X.evt.<host>.<vmId>` with `expect.lastSubjectSequence` (last sequence per VM kept in memory from PubAcks) and a `msgID`, then `ack()`.",
    );
    L.push(
      '- **vmq**: the real `Worker` from the build (`dist/`, what `vmq worker` runs) in-process, `FaultyBackend(NoopBackend, { latencyMs: 0 })`, `snapshots: "off"`, `reconcileIntervalMs: 0`, `concurrency: c`, logging as `vmq worker` does by default (pino at `info`, written asynchronously, here to `/dev/null`; what logs cost is measured below).',
    );
    L.push("");
    const rows = concurrencies(r).map((c) => {
      const b = medianBy(r.throughput.baseline, c);
      const v = medianBy(r.throughput.vmq, c);
      return [
        c,
        b ? `${b.commands.toLocaleString("en")} / ${b.vms.toLocaleString("en")}` : "",
        b ? `${b.cmdPerSec}${range(r.throughput.baseline, c)}` : "",
        b ? b.wallCmdPerSec : "",
        v ? `${v.cmdPerSec}${range(r.throughput.vmq, c)}` : "",
        v ? v.wallCmdPerSec : "",
        ((p) => (p ? `**${pct(p.ratio)}**${p.range ? ` (${p.range})` : ""}` : ""))(ratioFor(r, c)),
        v?.viewWritesPerCommand ?? "",
        (b?.errors ?? 0) + (v?.errors ?? 0),
      ];
    });
    L.push(
      table(
        [
          "concurrency",
          "commands / VMs",
          "baseline commands/s (range)",
          "baseline wall commands/s",
          "vmq commands/s (range)",
          "vmq wall commands/s",
          "vmq / baseline, median of paired runs (range)",
          "vmq view writes per command",
          "errors",
        ],
        rows,
      ),
    );
  }

  if (r.latency.length) {
    L.push("\n## Latency as a scheduler sees it\n");
    L.push(
      "A closed loop: *c* lanes, one VM each; a lane publishes a command with JetStream (PubAck awaited), waits until the command's outcome " +
        "event arrives on a core subscription to `X.evt.<host>.>`, then publishes the next. Latency = from the publish call to the outcome seen. " +
        "The worker runs with `concurrency: c`. A core subscription is used instead of `VmqClient.send`, which creates (and deletes) an ordered consumer per " +
        "call and scans the VM's history: that per-call setup (several JetStream API round trips) would dominate the figure and is a client cost, not the worker's. " +
        "The same client measures the baseline program. " +
        `Each concurrency runs ${r.latency[0]?.reps ?? 1} repetition(s) per system, alternating which goes first; ` +
        "the quantiles are over all their samples together (each repetition's own p99 is shown too).",
    );
    L.push("");
    const cs = [...new Set(r.latency.map((l) => l.concurrency))].sort((a, b) => a - b);
    L.push(
      table(
        [
          "concurrency",
          "samples",
          "baseline p50 / p99 ms",
          "vmq p50 / p90 / p99 / max ms",
          "p99 per repetition ms (baseline; vmq)",
          "baseline commands/s",
          "vmq commands/s",
        ],
        cs.map((c) => {
          const b = r.latency.find((l) => l.system === "baseline" && l.concurrency === c);
          const v = r.latency.find((l) => l.system === "vmq" && l.concurrency === c);
          return [
            c,
            v?.count ?? b?.count ?? "",
            b ? `${b.p50} / ${b.p99}` : "",
            v ? `${v.p50} / ${v.p90} / ${v.p99} / ${v.max}` : "",
            `${b?.p99ByRep?.join(", ") ?? ""}; ${v?.p99ByRep?.join(", ") ?? ""}`,
            b?.cmdPerSec ?? "",
            v?.cmdPerSec ?? "",
          ];
        }),
      ),
    );
  }

  if (r.logs.length) {
    L.push("\n## What logs cost\n");
    L.push(
      "vmq at the same pre-loaded throughput run with `silentLogger()`, with pino at `info` (the default: lifecycle lines, warnings and errors, nothing per successful command) and at `debug` (plus one `command done` line per command, its fields attached per call), written asynchronously to `/dev/null`.",
    );
    L.push("");
    const cs = [...new Set(r.logs.map((l) => l.concurrency))];
    const mode = (m: string, c: number) =>
      medianBy(
        r.logs.filter((l) => l.log === m),
        c,
      );
    const cost = (x?: ThroughputResult, s?: ThroughputResult) =>
      s && x ? pct(1 - x.cmdPerSec / s.cmdPerSec) : "";
    L.push(
      table(
        [
          "concurrency",
          "silent commands/s",
          "info (default) commands/s",
          "cost",
          "debug commands/s",
          "cost",
        ],
        cs.map((c) => {
          const s = mode("silent", c);
          const i = mode("info-devnull", c);
          const d = mode("debug-devnull", c);
          return [
            c,
            s?.cmdPerSec ?? "",
            i?.cmdPerSec ?? "",
            cost(i, s),
            d?.cmdPerSec ?? "",
            cost(d, s),
          ];
        }),
      ),
    );
  }

  if (r.scaleOut.length) {
    L.push("\n## Scale-out\n");
    const s0 = r.scaleOut[0];
    L.push(
      `1, 2 and 4 workers with distinct host ids, each in its own Node process (\`scripts/bench/child.ts\`), sharing one nats-server; ` +
        `Noop latency ${s0?.latencyMs} ms per call, concurrency ${s0?.concurrencyPerWorker} per worker. Each host has VMs of its own (vmIds are unique across the fleet). Commands are spread evenly over the hosts and ` +
        "published while the workers run; throughput = commands / (first publish → last outcome seen on a core subscription). " +
        "The ideal is workers × concurrency / latency.",
    );
    L.push("");
    const one = r.scaleOut.find((x) => x.workers === 1);
    L.push(
      table(
        [
          "workers",
          "commands",
          "seconds",
          "commands/s",
          "ideal commands/s",
          "of ideal",
          "vs 1 worker",
          "not succeeded",
        ],
        r.scaleOut.map((x) => [
          x.workers,
          x.commands,
          round(x.ms / 1000, 2),
          x.cmdPerSec,
          x.idealCmdPerSec,
          pct(x.cmdPerSec / x.idealCmdPerSec),
          one ? `${round(x.cmdPerSec / one.cmdPerSec, 2)}x` : "",
          x.notSucceeded ?? "",
        ]),
      ),
    );
  }

  if (r.recovery) {
    const rec = r.recovery;
    L.push("\n## Recovery: cold start\n");
    L.push(
      `${rec.vms.toLocaleString("en")} VMs × 10 events = ${rec.events.toLocaleString("en")} events (valid v1 histories made with the domain's ` +
        "`decide`/`succeeded`/`evolve`: prepare, start, stop, start, stop) preloaded into the events stream " +
        `in ${round(rec.preloadMs / 1000, 1)} s. Each start is a fresh Node process (\`--expose-gc\`) whose Noop backend already knows every VM (as a ` +
        "host whose guests outlived the worker would), timed from `new Worker(...).start()` until it resolves: provisioning check, snapshot load, replay, " +
        "reconcile of every VM (adopt + state), ready to consume. *replay* is `worker.stats.replayMs` (snapshot load + replay). " +
        "RSS/heap deltas are measured after a forced GC, before `start()` (modules loaded, Noop seeded) and after it.",
    );
    L.push("");
    L.push(
      table(
        [
          "run",
          "start ms",
          "replay ms",
          "events replayed",
          "VMs",
          "RSS MiB",
          "RSS delta MiB",
          "heap delta MiB",
          "RSS delta per 10k VMs MiB",
          "drain ms",
        ],
        rec.runs.map((x) => [
          x.label,
          x.startMs,
          x.replayMs,
          x.replayedEvents,
          x.vms,
          x.rssMiB,
          x.rssDeltaMiB,
          x.heapDeltaMiB,
          x.rssDeltaPer10kVmsMiB,
          x.drainMs,
        ]),
      ),
    );
  }

  if (r.profile.length) {
    L.push("\n## Where the time goes\n");
    for (const p of r.profile) {
      L.push(
        `### vmq throughput run at concurrency ${p.concurrency} under \`node --cpu-prof\`\n\n` +
          `${p.commands.toLocaleString("en")} pre-loaded commands, worker in a child process, ${p.runMs} ms; ` +
          `${p.sampledMs} ms of samples ${p.windowed ? "inside the measured window (module loading excluded)" : "(whole process)"}.\n`,
      );
      L.push(
        table(
          ["by package / folder", "self ms", "%"],
          p.categories.slice(0, 12).map((c) => [c.category, c.selfMs, c.pct]),
        ),
      );
      L.push("");
      L.push(
        table(
          ["#", "function", "where", "self ms", "%", "what it is"],
          p.topFunctions.map((f, i) => [
            i + 1,
            `\`${f.name}\``,
            f.where,
            f.selfMs,
            f.pct,
            EXPLAIN[f.name] ?? "",
          ]),
        ),
      );
      L.push("");
    }
  }

  if (r.qemu) L.push("\n## QEMU side by side\n", qemuTable(r.qemu), "");
  if (r.images) L.push("", imagesMarkdown(r.images));
  if (r.churn) L.push("", churnMarkdown(r.churn));
  if (r.failures.length) {
    L.push("\n## Sections that failed\n");
    for (const f of r.failures) L.push(`- ${f.section}: ${f.message.replace(/\n/g, " ")}`);
  }
  return `${L.join("\n")}\n`;
}

export { quantile };
