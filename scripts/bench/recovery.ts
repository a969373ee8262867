/**
 * Recovery: a host with `vms` VMs x 10 events (valid v1 histories made with the domain's own
 * decide/succeeded/evolve) preloaded into the events stream; then a worker in a fresh process
 * is timed from `new Worker().start()` until it resolves (provision check + replay + reconcile
 * of every VM against a Noop backend that knows them all), with snapshots off, then on.
 */
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import type { NatsServer } from "../../test/helpers/nats-server.js";
import { benchPrefix, namesFor } from "./common.js";
import { recoveryHistory } from "./recovery-data.js";
import { BenchChild } from "./spawn.js";
import { round } from "./stats.js";
import { provisionVmq } from "./vmq.js";

const HOST = "r1";
const encoder = new TextEncoder();

interface ChildReport {
  startMs: number;
  replayMs: number;
  replayedEvents: number;
  replayFrom: string;
  vms: number;
  observed: number;
  drainMs: number;
  rssBaseline: number;
  rssBefore: number;
  rssAfter: number;
  heapBefore: number;
  heapAfter: number;
  gcExposed: boolean;
}

export interface RecoveryRun {
  label: string;
  snapshots: "on" | "off";
  startMs: number;
  replayMs: number;
  replayedEvents: number;
  replayFrom: string;
  vms: number;
  drainMs: number;
  rssMiB: number;
  rssDeltaMiB: number;
  heapDeltaMiB: number;
  rssDeltaPer10kVmsMiB: number;
}

export interface RecoveryResult {
  vms: number;
  events: number;
  preloadMs: number;
  runs: RecoveryRun[];
}

const MiB = 2 ** 20;

export async function recovery(
  server: NatsServer,
  nc: NatsConnection,
  vms: number,
): Promise<RecoveryResult> {
  const names = namesFor(benchPrefix("rec"));
  await provisionVmq(nc, names, [HOST]);
  // Preload with core publishes (the stream captures them), flushing every few thousand.
  const t0 = performance.now();
  let seq = 0;
  let events = 0;
  for (let i = 0; i < vms; i++) {
    for (const e of recoveryHistory(HOST, i, () => ++seq)) {
      nc.publish(names.evt(HOST, e.vmId), encoder.encode(JSON.stringify(e)));
      events++;
    }
    if (i % 500 === 499) await nc.flush();
  }
  await nc.flush();
  const jsm = await jetstreamManager(nc);
  let stored = 0;
  const poll = async (): Promise<void> => {
    for (let k = 0; k < 1200 && stored < events; k++) {
      stored = (await jsm.streams.info(names.eventsStream)).state.messages;
      if (stored < events) await new Promise((r) => setTimeout(r, 100));
    }
  };
  await poll();
  if (stored !== events) throw new Error(`preload stored ${stored} of ${events} events`);
  const preloadMs = performance.now() - t0;

  const runs: RecoveryRun[] = [];
  const once = async (label: string, snapshots: "on" | "off"): Promise<void> => {
    const child = BenchChild.spawn(
      {
        mode: "recovery",
        url: server.url,
        prefix: names.prefix,
        host: HOST,
        concurrency: 16,
        vms,
        snapshots,
      },
      [
        "--expose-gc",
        // VMQ_BENCH_PROFILE_DIR: also profile each cold start (see profile.ts).
        ...(process.env.VMQ_BENCH_PROFILE_DIR
          ? ["--cpu-prof", "--cpu-prof-dir", process.env.VMQ_BENCH_PROFILE_DIR]
          : []),
      ],
      180_000,
    );
    const r = await child.next<ChildReport>();
    await child.exit();
    const rssDelta = r.rssAfter - r.rssBefore;
    runs.push({
      label,
      snapshots,
      startMs: round(r.startMs),
      replayMs: round(r.replayMs),
      replayedEvents: r.replayedEvents,
      replayFrom: r.replayFrom,
      vms: r.vms,
      drainMs: round(r.drainMs),
      rssMiB: round(r.rssAfter / MiB, 1),
      rssDeltaMiB: round(rssDelta / MiB, 1),
      heapDeltaMiB: round((r.heapAfter - r.heapBefore) / MiB, 1),
      rssDeltaPer10kVmsMiB: round(((rssDelta / MiB) * 10_000) / Math.max(1, r.vms), 1),
    });
  };
  await once("snapshots off (full replay)", "off");
  await once("snapshots on, none yet (full replay; drain writes one)", "on");
  await once("snapshots on, from the snapshot", "on");
  await once("snapshots off again (warm server cache)", "off");
  return { vms, events, preloadMs: round(preloadMs), runs };
}

/**
 * The goals rows: the full replay alone (reading, checking and folding every event), and the
 * whole cold start (with the provisioning check, the start reconcile of every VM and the
 * services), without and with a snapshot. Every run counts: the worst one is reported.
 */
export function recoveryGoals(rec: RecoveryResult) {
  const full = rec.runs.filter((x) => x.replayFrom === "full");
  const snap = rec.runs.filter((x) => x.replayFrom === "snapshot");
  const off = rec.runs.filter((x) => x.snapshots === "off");
  const at10k = rec.vms >= 10_000;
  const scaled = at10k ? "" : ` (${rec.vms} VMs in this run, not 10,000)`;
  const span = (v: number[]) =>
    v.length > 1 ? `${Math.min(...v)}–${Math.max(...v)} ms` : `${v[0]} ms`;
  const out = [];
  if (full.length)
    out.push({
      goal: `full replay of ${rec.events.toLocaleString("en")} events (${rec.vms.toLocaleString("en")} VMs), the replay alone`,
      target: "< 1 s",
      measured: `${span(full.map((x) => x.replayMs))} (${full.length} runs)${scaled}`,
      met: at10k ? Math.max(...full.map((x) => x.replayMs)) < 1000 : null,
    });
  if (off.length)
    out.push({
      goal: `cold start with ${rec.vms.toLocaleString("en")} VMs, snapshots off (replay, reconcile, services)`,
      target: "< 1 s",
      measured: `${span(off.map((x) => x.startMs))}${scaled}`,
      met: at10k ? Math.max(...off.map((x) => x.startMs)) < 1000 : null,
    });
  if (snap.length)
    out.push({
      goal: `cold start with ${rec.vms.toLocaleString("en")} VMs, from a snapshot`,
      target: "< 1 s",
      measured: `${span(snap.map((x) => x.startMs))}${scaled}`,
      met: at10k ? Math.max(...snap.map((x) => x.startMs)) < 1000 : null,
    });
  return out;
}
