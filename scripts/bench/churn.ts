/**
 * Churn: a long life compressed. A worker in its own process (Noop backend, snapshots on, a
 * retention window of 2 s, a sweep every second) takes `vms` VMs through prepare, start, stop
 * and destroy, with at most LIVE of them alive at any time. At 10%, 50% and 100% of the run the
 * driver lets the lifecycles in flight finish and the sweep compact them, then measures what a
 * long-lived host accumulates: the worker's resident memory after a forced GC, the streams and
 * buckets on the server, and the cold start of a fresh worker process from the snapshot and from
 * a full replay. Every figure should stay flat after the first window.
 */
import { randomUUID } from "node:crypto";
import { jetstream, jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import type { NatsServer } from "../../test/helpers/nats-server.js";
import { benchPrefix, namesFor, SPEC, waitFor, type Names } from "./common.js";
import { BenchChild } from "./spawn.js";
import { departure } from "./flatness.js";
import { round, settle } from "./stats.js";
import { provisionVmq } from "./vmq.js";

const HOST = "c1";
export const CHURN_LIVE = 1_000;
/**
 * At most this many VMs not yet compacted (alive, or destroyed and waiting out the window and
 * the sweep). A long life is one whose sweep keeps up with its destroys; without this bound a
 * driver destroying faster than the sweep compacts measures a growing backlog instead. How long
 * the driver waited on it is reported.
 */
export const CHURN_HELD = 3_000;
const RETENTION_MS = 2_000;
/** Cold starts of each kind at each point, taken in turns with the control. */
const ROUNDS = 7;
const MiB = 2 ** 20;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

export interface ChurnPoint {
  pct: number;
  vmsDone: number;
  rssMiB: number;
  heapMiB: number;
  /** VMs the worker still holds (live, or destroyed inside the window). */
  held: number;
  eventsMiB: number;
  eventsMessages: number;
  commandsMiB: number;
  snapshotKiB: number;
  viewMessages: number;
  tombstonesMiB: number;
  tombstones: number;
  coldSnapshotMs: number;
  coldFullReplayMs: number;
  /** Every start of each kind, in the order they ran (absent in earlier reports). */
  coldSnapshotRunsMs?: number[];
  coldFullReplayRunsMs?: number[];
  /** The same start against a server that never saw a VM, taken between them (absent before). */
  coldControlMs?: number;
  coldControlRunsMs?: number[];
  /** The median over the rounds of each start over the control of its round. */
  coldSnapshotOverControl?: number;
  coldFullReplayOverControl?: number;
  /** Each step of the worker's start, its median over the starts (name → ms). */
  coldSnapshotStepsMs?: Record<string, number>;
  coldFullReplayStepsMs?: Record<string, number>;
  fullReplayEvents: number;
}

export interface ChurnResult {
  vms: number;
  live: number;
  retentionMs: number;
  commands: number;
  wallMs: number;
  commandsPerSec: number;
  /** The bound on VMs not yet compacted (CHURN_HELD); absent in runs from before it. */
  heldMax?: number;
  /** How long the driver waited for the sweep rather than for VMs to be destroyed. */
  waitedForSweepMs?: number;
  points: ChurnPoint[];
}

/** The metrics that must stay flat (within 20% of the first window's figure). */
export const FLAT_METRICS = [
  ["rssMiB", "worker resident memory"],
  ["eventsMiB", "events stream bytes"],
  ["snapshotKiB", "snapshot bytes"],
  ["coldSnapshotMs", "cold start from the snapshot"],
  ["coldFullReplayMs", "cold start, full replay"],
] as const satisfies readonly (readonly [keyof ChurnPoint, string])[];

const command = (vmId: string, type: string, extra: object = {}) => {
  const commandId = randomUUID();
  const body = { version: 1, commandId, vmId, issuedAt: new Date().toISOString(), type, ...extra };
  return { commandId, data: encoder.encode(JSON.stringify(body)) };
};

async function streamFigures(jsm: JetStreamManager, names: Names) {
  const info = (s: string) => jsm.streams.info(s).then((i) => i.state);
  const [events, commands, snaps, view, tombs] = await Promise.all([
    info(names.eventsStream),
    info(names.commandsStream),
    info(`KV_${names.snapshotsBucket}`),
    info(`KV_${names.vmsBucket}`),
    info(`KV_${names.tombstonesBucket}`),
  ]);
  return {
    eventsMiB: round(events.bytes / MiB, 2),
    eventsMessages: events.messages,
    commandsMiB: round(commands.bytes / MiB, 2),
    snapshotKiB: round(snaps.bytes / 1024, 1),
    viewMessages: view.messages,
    tombstonesMiB: round(tombs.bytes / MiB, 2),
    tombstones: tombs.messages,
  };
}

export async function churn(
  server: NatsServer,
  nc: NatsConnection,
  vms: number,
  log: (s: string) => void,
  controlServer: { control: NatsServer; controlNc: NatsConnection },
): Promise<ChurnResult> {
  const names = namesFor(benchPrefix("churn"));
  await provisionVmq(nc, names, [HOST]);
  const jsm = await jetstreamManager(nc);
  const js = jetstream(nc);
  let destroyed = 0;
  let failed = 0;
  const sub = nc.subscribe(names.evt(HOST, "*"), {
    callback: (_e, m) => {
      const head = decoder.decode(m.data.subarray(0, 48));
      if (head.includes('"vm.destroyed"')) destroyed++;
      else if (head.includes('"vm.command-rejected"') || head.includes('"vm.command-failed"'))
        failed++;
    },
  });
  const base = { url: server.url, prefix: names.prefix, host: HOST, concurrency: 16 };
  const startChurnWorker = async (): Promise<BenchChild> => {
    const c = BenchChild.spawn({ ...base, mode: "churn", retentionMs: RETENTION_MS }, [
      "--expose-gc",
    ]);
    await c.next<{ ready: boolean }>();
    return c;
  };
  const coldStart = async (snapshots: "on" | "off", on = base) => {
    const c = BenchChild.spawn({ ...on, mode: "recovery", vms: 0, snapshots }, ["--expose-gc"]);
    const r = await c.next<ColdStart>();
    await c.exit();
    return r;
  };
  // The control: the same start against a second nats-server that never saw a VM, taken
  // between the others. A start that is slower at a later point while the control is too
  // measures the machine at that moment, not the history.
  const { control, controlNc } = controlServer;
  const controlNames = namesFor(benchPrefix("churnctl"));
  await provisionVmq(controlNc, controlNames, [HOST]);
  const controlBase = { ...base, url: control.url, prefix: controlNames.prefix };

  // The sweep's progress, as the server sees it: one tombstone per compacted VM.
  let compacted = 0;
  let polling = true;
  const poll = (async () => {
    while (polling) {
      const info = await jsm.streams.info(`KV_${names.tombstonesBucket}`).catch(() => undefined);
      if (info) compacted = info.state.messages;
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  let waitedForSweepMs = 0;

  let worker = await startChurnWorker();
  const points: ChurnPoint[] = [];
  const t0 = performance.now();
  let measuredMs = 0;
  let next = 0;
  for (const pct of [10, 50, 100]) {
    const until = Math.round((vms * pct) / 100);
    while (next < until) {
      const w0 = next - compacted >= CHURN_HELD ? performance.now() : undefined;
      await waitFor(
        () => next - destroyed < CHURN_LIVE && next - compacted < CHURN_HELD,
        300_000,
        "room for another VM",
        5,
      ).catch(async (e: Error) => {
        // A stall says what the worker was doing, not only that it stalled.
        worker.send("measure");
        const held = await Promise.race([
          worker.next<object>(),
          new Promise((r) => setTimeout(() => r("no answer"), 5_000)),
        ]);
        throw new Error(
          `${e.message}: ${next} sent, ${destroyed} destroyed, ${compacted} compacted, ${failed} failed; the worker: ${JSON.stringify(held)}; its log ends: ${worker.stderr.slice(-1500)}`,
        );
      });
      if (w0 !== undefined) waitedForSweepMs += performance.now() - w0;
      const n = Math.min(
        200,
        until - next,
        CHURN_LIVE - (next - destroyed),
        CHURN_HELD - (next - compacted),
      );
      const acks: Promise<unknown>[] = [];
      for (let i = 0; i < n; i++) {
        const vmId = `ch-${next + i}`;
        const subject = names.cmd(HOST, vmId);
        for (const c of [
          command(vmId, "vm.prepare", { spec: SPEC }),
          command(vmId, "vm.start"),
          command(vmId, "vm.stop", { timeoutMs: 0, force: "now" }),
          command(vmId, "vm.destroy"),
        ])
          acks.push(js.publish(subject, c.data, { msgID: c.commandId }));
      }
      await Promise.all(acks);
      next += n;
    }
    await waitFor(() => destroyed + failed >= until, 300_000, `${until} VMs destroyed`, 20);
    if (failed) throw new Error(`${failed} commands were rejected or failed during the churn`);
    const m0 = performance.now();
    // Past the window, the sweep compacts what was destroyed: wait until it holds nothing more.
    await new Promise((r) => setTimeout(r, RETENTION_MS));
    let mem: { rss: number; heapUsed: number; held: number } | undefined;
    for (let k = 0; k < 60; k++) {
      worker.send("measure");
      mem = await worker.next<{ rss: number; heapUsed: number; held: number }>();
      if (mem.held === 0) break;
      await new Promise((r) => setTimeout(r, 1_000));
    }
    worker.send("stop");
    await worker.next<{ done: boolean }>();
    await worker.exit();
    const figures = await streamFigures(jsm, names);
    // The churn worker's exit and the server's purges still run for a moment: a start timed
    // now measures them too (in two full runs the 10% point had the slowest starts).
    await settle();
    // Each cold start ROUNDS times, the median kept: one start is ~0.1 s, within the noise.
    // The three kinds take turns, so that each sees the machine as the others do.
    const rounds: ColdStart[][] = [];
    for (let i = 0; i < ROUNDS; i++)
      rounds.push([
        await coldStart("on"),
        await coldStart("off"),
        await coldStart("on", controlBase),
      ]);
    const [snap, full, ctl] = [0, 1, 2].map((k) =>
      medianStart(rounds.map((r) => r[k] as ColdStart)),
    ) as [Cold, Cold, Cold];
    // Each start over the control of its own round, the median over the rounds.
    const overControl = (k: number) =>
      round(medianOf(rounds.map((r) => (r[k]?.startMs ?? 0) / (r[2]?.startMs ?? 1))), 2);
    points.push({
      pct,
      vmsDone: until,
      rssMiB: round((mem?.rss ?? 0) / MiB, 1),
      heapMiB: round((mem?.heapUsed ?? 0) / MiB, 1),
      held: mem?.held ?? -1,
      ...figures,
      coldSnapshotMs: round(snap.startMs),
      coldFullReplayMs: round(full.startMs),
      coldSnapshotRunsMs: snap.runsMs,
      coldFullReplayRunsMs: full.runsMs,
      coldControlMs: round(ctl.startMs),
      coldSnapshotOverControl: overControl(0),
      coldFullReplayOverControl: overControl(1),
      coldControlRunsMs: ctl.runsMs,
      coldSnapshotStepsMs: snap.stepsMs,
      coldFullReplayStepsMs: full.stepsMs,
      fullReplayEvents: full.replayedEvents,
    });
    log(
      `churn ${pct}%: ${until} VMs, RSS ${points.at(-1)?.rssMiB} MiB, events ${figures.eventsMiB} MiB, cold ${round(snap.startMs)} / ${round(full.startMs)} ms (control ${round(ctl.startMs)} ms); steps ${JSON.stringify(snap.stepsMs)} / ${JSON.stringify(full.stepsMs)}`,
    );
    if (pct < 100) worker = await startChurnWorker();
    measuredMs += performance.now() - m0;
  }
  sub.unsubscribe();
  polling = false;
  await poll;
  const wallMs = performance.now() - t0;
  return {
    vms,
    live: CHURN_LIVE,
    heldMax: CHURN_HELD,
    retentionMs: RETENTION_MS,
    commands: vms * 4,
    wallMs: round(wallMs),
    commandsPerSec: round((vms * 4) / ((wallMs - measuredMs) / 1000)),
    waitedForSweepMs: round(waitedForSweepMs),
    points,
  };
}

type Step = { step: string; ms: number };
type ColdStart = { startMs: number; steps: Step[]; replayedEvents: number; replayFrom: string };
type Cold = ColdStart & { runsMs: number[]; stepsMs: Record<string, number> };

const medianOf = (xs: number[]): number =>
  [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;

/** The median start, every start in order, and each step's own median (where the time went). */
function medianStart(runs: ColdStart[]): Cold {
  const runsMs = runs.map((r) => round(r.startMs));
  const stepsMs: Record<string, number> = {};
  for (const { step } of runs[0]?.steps ?? [])
    stepsMs[step] = round(
      medianOf(runs.map((r) => r.steps.find((s) => s.step === step)?.ms ?? 0)),
      1,
    );
  const median = [...runs].sort((a, b) => a.startMs - b.startMs)[Math.floor(runs.length / 2)];
  return { ...(median as ColdStart), runsMs, stepsMs };
}

/**
 * The cold starts are judged over their control: a later point on a machine that happens to be
 * slower (or faster) for a minute moves the control with them, while history would not.
 */
const OVER_CONTROL = {
  coldSnapshotMs: "coldSnapshotOverControl",
  coldFullReplayMs: "coldFullReplayOverControl",
} as const;

const pctOf = (d: number) =>
  Number.isFinite(d) ? `max departure ${round(d * 100, 1)}%` : "grew from 0";

export function churnGoals(r: ChurnResult) {
  return FLAT_METRICS.map(([key, label]) => {
    const raw = departure(r.points, key);
    const goal = `churn: ${label} flat over ${r.vms.toLocaleString("en")} VMs`;
    const over = key in OVER_CONTROL ? OVER_CONTROL[key as keyof typeof OVER_CONTROL] : undefined;
    const ratios = over && r.points.map((p) => p[over]);
    const controls = r.points.map((p) => p.coldControlMs);
    if (ratios?.every((x) => x !== undefined)) {
      const d = departure(
        ratios.map((x) => ({ x })),
        "x",
      );
      return {
        goal,
        target: "within 20% of the first window (10%), each start over a control start in its turn",
        measured: `${ratios.join(" → ")} of the control (${pctOf(d)}); ${r.points.map((p) => p[key]).join(" → ")} ms against ${controls.join(" → ")} ms (raw: ${pctOf(raw)})`,
        met: Number.isNaN(d) ? null : d <= 0.2,
      };
    }
    return {
      goal,
      target: "within 20% of the first window (10%)",
      measured: `${r.points.map((p) => `${p[key]}`).join(" → ")} (${pctOf(raw)})`,
      met: Number.isNaN(raw) ? null : raw <= 0.2,
    };
  });
}

export function churnMarkdown(r: ChurnResult): string {
  const controlled = r.points.every((p) => p.coldControlRunsMs);
  const last = r.points.at(-1);
  const steps = (x: Record<string, number> | undefined) =>
    Object.entries(x ?? {})
      .filter(([, ms]) => ms >= 1)
      .map(([step, ms]) => `${step} ${ms}`)
      .join(", ");
  const rows = r.points.map(
    (p) =>
      `| ${p.pct}% (${p.vmsDone.toLocaleString("en")}) | ${p.rssMiB} / ${p.heapMiB} | ${p.held} | ${p.eventsMiB} (${p.eventsMessages.toLocaleString("en")}) | ${p.commandsMiB} | ${p.snapshotKiB} | ${p.viewMessages.toLocaleString("en")} | ${p.tombstonesMiB} (${p.tombstones.toLocaleString("en")}) | ${p.coldSnapshotMs} | ${p.coldFullReplayMs} (${p.fullReplayEvents.toLocaleString("en")} events) |${controlled ? ` ${p.coldControlMs} | ${p.coldSnapshotOverControl} / ${p.coldFullReplayOverControl} |` : ""}`,
  );
  return [
    "## Churn: a long life compressed",
    "",
    `${r.vms.toLocaleString("en")} VMs, each prepared, started, stopped and destroyed (${r.commands.toLocaleString("en")} commands, ${r.commandsPerSec} commands/s while driving), at most ${r.live.toLocaleString("en")} alive at any time${r.heldMax ? ` and at most ${r.heldMax.toLocaleString("en")} not yet compacted (alive, or destroyed and waiting out the window and the sweep; the driver waited ${round((r.waitedForSweepMs ?? 0) / 1000, 1)} s in all for the sweep)` : ""}, on one worker in its own process (Noop backend, snapshots on) with a retention window of ${r.retentionMs / 1000} s and a sweep every second (the default window is 24 h). At each point the driver stops, lets the lifecycles in flight finish and the sweep compact them, then measures: resident memory and heap after a forced GC, the streams and buckets on the server, and the cold start of a fresh worker process (from the snapshot its drain wrote, and with snapshots off; ${controlled ? `the median of ${last?.coldControlRunsMs?.length} each, begun once the machine is quiet, taken in turns with a *control*: the same start against a second nats-server that never saw a VM, so that a minute in which the machine runs slower shows in the control too; the cold starts are judged over it` : "the median of five each, begun once the machine is quiet"}). The whole section took ${round(r.wallMs / 1000, 1)} s.`,
    "",
    `| point | worker RSS / heap MiB | VMs held | events stream MiB (messages) | commands stream MiB | snapshot KiB | view bucket messages | tombstones MiB (keys) | cold start, snapshot ms | cold start, full replay ms |${controlled ? " control start ms | over the control (snapshot / full replay) |" : ""}`,
    `|---|---|---|---|---|---|---|---|---|---|${controlled ? "---|---|" : ""}`,
    ...rows,
    "",
    ...(controlled
      ? [
          `The cold starts at each point, in the order they ran (from the snapshot; full replay; control): ${r.points.map((p) => `${p.pct}%: ${p.coldSnapshotRunsMs?.join(", ")}; ${p.coldFullReplayRunsMs?.join(", ")}; ${p.coldControlRunsMs?.join(", ")} ms`).join(". ")}.`,
          "",
          `Where a start's time went at the last point (each step's median in ms, steps under 1 ms left out; from the snapshot: ${steps(last?.coldSnapshotStepsMs)}; full replay: ${steps(last?.coldFullReplayStepsMs)}). The worker logs the same figures in its "worker running" line. Loading the snapshot and replaying the events is "host state"; the first reconcile is "reconciler".`,
          "",
        ]
      : r.points.every((p) => p.coldSnapshotRunsMs && p.coldFullReplayRunsMs)
        ? [
            `The five cold starts at each point, in the order they ran (from the snapshot; full replay): ${r.points.map((p) => `${p.pct}%: ${p.coldSnapshotRunsMs?.join(", ")}; ${p.coldFullReplayRunsMs?.join(", ")} ms`).join(". ")}.`,
            "",
          ]
        : []),
    "The commands stream keeps every command for its age limit (`--commands-max-age-ms`, 7 days; `--commands-max-bytes`, 1 GiB), so within a run it grows with the run. The tombstones bucket keeps one small record per destroyed vmId for ever (that is what makes a replayed command harmless after any time): it grows with the number of VMs ever destroyed, not with the VMs alive, and is not read at start. The view bucket keeps nothing of a compacted VM (its purge marker is removed too).",
    "",
  ].join("\n");
}
