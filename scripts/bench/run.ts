/**
 * `npm run bench [-- --quick] [--only a,b] [--out dir]`: vmq's benchmark (issue 9, part 1).
 * Sections: baseline, vmq, latency, logs, scale-out, recovery, profile, qemu (vmq vs raw QEMU
 * side by side, with a real guest; printed as a table), images (object-store fetch vs a copy),
 * churn (a long life of short-lived VMs, compressed). Writes
 * <out>/benchmark.md and <out>/benchmark.json (default out: docs/, or bench-results/ with --quick).
 */
import { existsSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import type { NatsConnection } from "@nats-io/transport-node";
import { NatsServer } from "../../test/helpers/nats-server.js";
import { churn } from "./churn.js";
import { imagesBench } from "./images.js";
import { profileVmq } from "./profile.js";
import { qemuSideBySide, qemuTable } from "./qemu.js";
import { recovery } from "./recovery.js";
import { markdown, type BenchResults } from "./report.js";
import { scaleOut } from "./scale-out.js";
import { loadAverage, machineFacts, settle } from "./stats.js";
import {
  baselineLatency,
  baselineThroughput,
  pooled,
  vmqLatency,
  vmqThroughput,
  type LatencyRun,
} from "./throughput.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const SECTIONS = [
  "baseline",
  "vmq",
  "latency",
  "logs",
  "scale-out",
  "recovery",
  "profile",
  "qemu",
  "images",
  "churn",
] as const;
type Section = (typeof SECTIONS)[number];

const { values } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    only: { type: "string" },
    out: { type: "string" },
    help: { type: "boolean", default: false },
    render: { type: "string" },
  },
});
if (values.help) {
  process.stdout.write(
    `npm run bench -- [--quick] [--only ${SECTIONS.join(",")}] [--out dir]\n` +
      "  --quick  small counts (a smoke run, about a minute); writes to bench-results/ unless --out\n" +
      "  --render <benchmark.json>  only re-render benchmark.md from an earlier run's JSON\n",
  );
  process.exit(0);
}
const analysisFile = fileURLToPath(new URL("./analysis.md", import.meta.url));
if (values.render) {
  const json = resolve(values.render);
  const earlier = JSON.parse(await readFile(json, "utf8")) as BenchResults;
  const notes =
    !earlier.quick && existsSync(analysisFile) ? await readFile(analysisFile, "utf8") : "";
  await writeFile(json.replace(/\.json$/, ".md"), markdown(earlier) + (notes ? `\n${notes}` : ""));
  process.exit(0);
}
const quick = values.quick;
const only = values.only?.split(",").map((s) => s.trim()) ?? [...SECTIONS];
for (const s of only)
  if (!SECTIONS.includes(s as Section))
    throw new Error(`unknown section ${s}: ${SECTIONS.join(", ")}`);
const outDir = resolve(ROOT, values.out ?? (quick ? "bench-results" : "docs"));

const SIZES = quick
  ? {
      reps: 1,
      latencyReps: 1,
      throughput: { 1: [300, 3], 8: [300, 4], 64: [300, 4] } as Record<number, [number, number]>,
      latency: { 1: 100, 8: 25, 64: 4 } as Record<number, number>,
      warmup: 3,
      scaleOut: { vmsPerHost: 48, perVm: 3 },
      recoveryVms: 1_000,
      profile: [500, 4] as [number, number],
      qemuPairs: 2,
      imageMiB: 64,
      imageReps: 2,
      churnVms: 4_000,
    }
  : {
      reps: 7,
      latencyReps: 3,
      throughput: { 1: [1_000, 4], 8: [2_000, 10], 64: [2_000, 10] } as Record<
        number,
        [number, number]
      >,
      latency: { 1: 1_000, 8: 250, 64: 40 } as Record<number, number>,
      warmup: 10,
      scaleOut: { vmsPerHost: 200, perVm: 6 },
      recoveryVms: 10_000,
      profile: [2_000, 10] as [number, number],
      qemuPairs: 6,
      imageMiB: 256,
      imageReps: 3,
      churnVms: 200_000,
    };
const CONCURRENCIES = [1, 8, 64];

const log = (s: string): void => {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${s}\n`);
};

async function withServer<T>(
  fn: (server: NatsServer, nc: NatsConnection) => Promise<T>,
): Promise<T> {
  const server = await NatsServer.start();
  const nc = await server.connect();
  try {
    return await fn(server, nc);
  } finally {
    await nc.close().catch(() => undefined);
    await server.stop();
  }
}

const began = performance.now();
const results: BenchResults = {
  machine: await machineFacts(),
  quick,
  sections: only,
  sizes: SIZES,
  durationMs: 0,
  loadAverage: {},
  throughput: { baseline: [], vmq: [] },
  latency: [],
  logs: [],
  scaleOut: [],
  profile: [],
  failures: [],
};

function throughputRuns(systems: ("baseline" | "vmq")[]): Promise<void> {
  return withServer(async (server, nc) => {
    for (let rep = 0; rep < SIZES.reps; rep++)
      for (const c of CONCURRENCIES)
        // Which system goes first alternates, so neither always runs on the warmer server.
        for (const system of rep % 2 ? [...systems].reverse() : systems) {
          const [vms, perVm] = SIZES.throughput[c] as [number, number];
          const run = system === "baseline" ? baselineThroughput : vmqThroughput;
          const r = await run(server, nc, c, vms, perVm);
          log(
            `${system} c=${c}: ${r.cmdPerSec} commands/s (${r.commands} commands, wall ${r.wallMs} ms)`,
          );
          results.throughput[system].push(r);
        }
  });
}

const sections: Record<Section, () => Promise<void>> = {
  // Baseline and vmq alternate (rep by rep, concurrency by concurrency) on one server, so a
  // change in the machine's load hits both alike instead of skewing their ratio.
  baseline: () => throughputRuns(only.includes("vmq") ? ["baseline", "vmq"] : ["baseline"]),
  vmq: () => (only.includes("baseline") ? Promise.resolve() : throughputRuns(["vmq"])),
  latency: () =>
    withServer(async (server, nc) => {
      for (const c of CONCURRENCIES) {
        const n = SIZES.latency[c] as number;
        // Repetitions alternate which system goes first; their samples are pooled, so one
        // burst of host stalls weighs as what it is: a few samples among thousands.
        const runs: Record<"baseline" | "vmq", LatencyRun[]> = { baseline: [], vmq: [] };
        for (let rep = 0; rep < SIZES.latencyReps; rep++)
          for (const system of rep % 2
            ? (["vmq", "baseline"] as const)
            : (["baseline", "vmq"] as const)) {
            const run = system === "baseline" ? baselineLatency : vmqLatency;
            const r = await run(server, nc, c, n, SIZES.warmup);
            log(`latency ${system} c=${c}: p50 ${r.result.p50} p99 ${r.result.p99} ms`);
            runs[system].push(r);
          }
        results.latency.push(pooled(runs.baseline), pooled(runs.vmq));
      }
    }),
  logs: () =>
    withServer(async (server, nc) => {
      const [vms, perVm] = SIZES.throughput[8] as [number, number];
      for (let rep = 0; rep < Math.min(2, SIZES.reps); rep++)
        for (const mode of ["silent", "info-devnull", "debug-devnull"] as const) {
          const r = await vmqThroughput(server, nc, 8, vms, perVm, mode);
          log(`logs ${mode} c=8: ${r.cmdPerSec} commands/s`);
          results.logs.push(r);
        }
    }),
  "scale-out": () =>
    withServer(async (server, nc) => {
      for (const n of [1, 2, 4]) {
        const r = await scaleOut(server, nc, n, {
          concurrency: 16,
          latencyMs: 50,
          ...SIZES.scaleOut,
        });
        log(`scale-out ${n} workers: ${r.cmdPerSec} commands/s (ideal ${r.idealCmdPerSec})`);
        results.scaleOut.push(r);
      }
    }),
  recovery: () =>
    withServer(async (server, nc) => {
      const r = await recovery(server, nc, SIZES.recoveryVms);
      for (const x of r.runs)
        log(
          `recovery ${x.label}: start ${x.startMs} ms, replay ${x.replayMs} ms, RSS +${x.rssDeltaMiB} MiB`,
        );
      results.recovery = r;
    }),
  profile: () =>
    withServer(async (server, nc) => {
      const [vms, perVm] = SIZES.profile;
      for (const c of [8, 64]) {
        const p = await profileVmq(server, nc, c, vms, perVm);
        log(
          `profile c=${c}: top ${p.topFunctions
            .slice(0, 3)
            .map((f) => `${f.name} ${f.pct}%`)
            .join(", ")}`,
        );
        results.profile.push(p);
      }
    }),
  qemu: () =>
    withServer(async (server, nc) => {
      results.qemu = await qemuSideBySide(server, nc, SIZES.qemuPairs, log);
      process.stdout.write(`\n${qemuTable(results.qemu)}\n\n`);
    }),
  images: () =>
    withServer(async (server, nc) => {
      const r = await imagesBench(server, nc, SIZES.imageMiB * 2 ** 20, SIZES.imageReps);
      log(
        `images: fetch ${r.fetchMiBs} MiB/s, copyFile ${r.copyFileMiBs} MiB/s, ratio ${r.ratio}x`,
      );
      results.images = r;
    }),
  churn: () =>
    withServer((server, nc) =>
      // A second server, never given a VM: the cold starts' control (see churn.ts).
      withServer(async (control, controlNc) => {
        results.churn = await churn(server, nc, SIZES.churnVms, log, { control, controlNc });
      }),
    ),
};

for (const s of SECTIONS) {
  if (!only.includes(s)) continue;
  const settledMs = await settle();
  results.loadAverage[s] = loadAverage();
  log(
    `section ${s} (load ${results.loadAverage[s]?.join(" ")}; waited ${settledMs} ms for a quiet machine)`,
  );
  try {
    await sections[s]();
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    log(`section ${s} FAILED: ${message}`);
    results.failures.push({ section: s, message });
  }
}
results.durationMs = Math.round(performance.now() - began);

const analysis = !quick && existsSync(analysisFile) ? await readFile(analysisFile, "utf8") : "";
await mkdir(outDir, { recursive: true });
await writeFile(join(outDir, "benchmark.json"), `${JSON.stringify(results, null, 2)}\n`);
await writeFile(
  join(outDir, "benchmark.md"),
  markdown(results) + (analysis ? `\n${analysis}` : ""),
);
log(
  `wrote ${join(outDir, "benchmark.md")} and benchmark.json in ${Math.round(results.durationMs / 1000)} s`,
);
process.exit(results.failures.length ? 1 : 0);
