/**
 * Profiles vmq's throughput run: commands are preloaded here, then a worker runs in a child
 * process under `node --cpu-prof` until every outcome is recorded. The .cpuprofile is parsed
 * here (self time per function and per file/package), restricted to the measured window.
 */
import { copyFile, mkdtemp, readFile, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { jetstream } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import type { NatsServer } from "../../test/helpers/nats-server.js";
import { benchPrefix, namesFor, planCommands, publishCommands } from "./common.js";
import { BenchChild } from "./spawn.js";
import { round } from "./stats.js";
import { provisionVmq } from "./vmq.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

interface CpuProfile {
  nodes: {
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number };
  }[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileEntry {
  name: string;
  where: string;
  category: string;
  selfMs: number;
  pct: number;
}

export interface ProfileResult {
  concurrency: number;
  commands: number;
  runMs: number;
  sampledMs: number;
  windowed: boolean;
  topFunctions: ProfileEntry[];
  categories: { category: string; selfMs: number; pct: number }[];
}

/** Which part of the system a profile frame belongs to. */
export function categorize(url: string, fn: string): string {
  if (!url) {
    if (fn === "(garbage collector)") return "GC";
    if (fn === "(idle)") return "idle (waiting for I/O)";
    if (fn === "(program)") return "V8/native (program)";
    return "native";
  }
  if (url.startsWith("node:")) return `node:${url.slice(5).split("/")[0] ?? ""}`;
  const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (m)
    return m[1] === "@nats-io/nats-core" || m[1]?.startsWith("@nats-io/")
      ? "nats.js"
      : (m[1] ?? "");
  // The worker runs from dist/ (the build); src/ when something loads the sources.
  const s = /\/(?:src|dist)\/([^/]+)\//.exec(url);
  if (s) return `vmq src/${s[1]}`;
  if (url.includes("/scripts/bench/")) return "bench harness";
  return "other";
}

const shortUrl = (url: string): string => {
  const p = url.startsWith("file://") ? fileURLToPath(url) : url;
  return p.startsWith("/") ? relative(ROOT, p).replace(/^node_modules\//, "") : p;
};

export function analyze(
  prof: CpuProfile,
  window?: { startUs: number; endUs: number },
): {
  top: ProfileEntry[];
  categories: ProfileResult["categories"];
  sampledMs: number;
  windowed: boolean;
} {
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const selfByNode = new Map<number, number>();
  let t = prof.startTime;
  let total = 0;
  let inWindow = 0;
  for (let i = 0; i < prof.samples.length; i++) {
    const dt = prof.timeDeltas[i] ?? 0;
    t += dt;
    if (window && (t < window.startUs || t > window.endUs)) continue;
    inWindow++;
    const id = prof.samples[i] as number;
    selfByNode.set(id, (selfByNode.get(id) ?? 0) + dt);
  }
  // If the clocks disagree (no sample in the window), fall back to the whole profile.
  const windowed = window !== undefined && inWindow > 100;
  if (!windowed) {
    selfByNode.clear();
    for (let i = 0; i < prof.samples.length; i++) {
      const id = prof.samples[i] as number;
      selfByNode.set(id, (selfByNode.get(id) ?? 0) + (prof.timeDeltas[i] ?? 0));
    }
  }
  const byFn = new Map<string, ProfileEntry>();
  const byCat = new Map<string, number>();
  for (const [id, us] of selfByNode) {
    total += us;
    const n = byId.get(id);
    if (!n) continue;
    const { functionName, url, lineNumber } = n.callFrame;
    const name = functionName || "(anonymous)";
    // tsx-transpiled files report line 0; only name a line when there is one.
    const where = url ? `${shortUrl(url)}${lineNumber > 0 ? `:${lineNumber + 1}` : ""}` : "";
    const category = categorize(url, name);
    const key = `${name}@${where}`;
    const e = byFn.get(key) ?? { name, where, category, selfMs: 0, pct: 0 };
    e.selfMs += us / 1000;
    byFn.set(key, e);
    byCat.set(category, (byCat.get(category) ?? 0) + us / 1000);
  }
  const totalMs = total / 1000;
  const top = [...byFn.values()]
    .sort((a, b) => b.selfMs - a.selfMs)
    .slice(0, 15)
    .map((e) => ({ ...e, selfMs: round(e.selfMs), pct: round((100 * e.selfMs) / totalMs, 1) }));
  const categories = [...byCat.entries()]
    .sort((a, b) => b[1] - a[1])
    .map(([category, ms]) => ({
      category,
      selfMs: round(ms),
      pct: round((100 * ms) / totalMs, 1),
    }));
  return { top, categories, sampledMs: round(totalMs), windowed };
}

export async function profileVmq(
  server: NatsServer,
  nc: NatsConnection,
  c: number,
  vms: number,
  perVm: number,
): Promise<ProfileResult> {
  const names = namesFor(benchPrefix(`prof${c}`));
  await provisionVmq(nc, names, ["h1"]);
  const cmds = planCommands(names, "h1", vms, perVm);
  await publishCommands(jetstream(nc), cmds);
  const dir = await mkdtemp(join(tmpdir(), "vmq-cpuprof-"));
  try {
    const child = BenchChild.spawn(
      {
        mode: "profile",
        url: server.url,
        prefix: names.prefix,
        host: "h1",
        concurrency: c,
        commands: cmds.length,
      },
      ["--cpu-prof", "--cpu-prof-dir", dir],
    );
    const r = await child.next<{ startUs: number; endUs: number; ms: number; commands: number }>();
    await child.exit();
    const file = (await readdir(dir)).find((f) => f.endsWith(".cpuprofile"));
    if (!file) throw new Error(`no .cpuprofile written: ${child.stderr.slice(-1000)}`);
    // VMQ_BENCH_PROFILE_DIR keeps a copy of each profile (open it in Chrome DevTools).
    const keep = process.env.VMQ_BENCH_PROFILE_DIR;
    if (keep) await copyFile(join(dir, file), join(keep, `vmq-c${c}.cpuprofile`));
    const prof = JSON.parse(await readFile(join(dir, file), "utf8")) as CpuProfile;
    const a = analyze(prof, { startUs: r.startUs, endUs: r.endUs });
    return {
      concurrency: c,
      commands: r.commands,
      runMs: round(r.ms),
      sampledMs: a.sampledMs,
      windowed: a.windowed,
      topFunctions: a.top,
      categories: a.categories,
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
