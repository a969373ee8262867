/**
 * Crash chaos: a real worker process that SIGKILLs itself at steps of its commands
 * (VMQ_FAILPOINTS), restarted by a supervisor until every command has its outcome. First a
 * deterministic schedule (one worker per step, killed the Kth time it reaches that step, so every
 * step is hit), then random failpoints. Used by the fault test (small) and `npm run chaos`
 * (longer), which prints the summary.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { VmqClient } from "../../src/client/index.js";
import type { CommandType, VmEvent } from "../../src/contracts/index.js";
import { replayVm, toView } from "../../src/domain/index.js";
import {
  COMMAND_FAILPOINTS as FAILPOINTS,
  type CommandFailpoint as Failpoint,
} from "../../src/lib/failpoints.js";
import { NatsServer, testPrefix } from "./nats-server.js";
import { WorkerProcess } from "./worker-process.js";
import { SPEC, eventually } from "./worker-harness.js";

export const PLAN: CommandType[] = [
  "vm.prepare",
  "vm.start",
  "vm.stop",
  "vm.start",
  "vm.suspend",
  "vm.resume",
  "vm.stop",
  "vm.destroy",
];
const EFFECT: Partial<Record<CommandType, string>> = {
  "vm.prepare": "prepare",
  "vm.start": "start",
  "vm.stop": "stop",
  "vm.suspend": "suspend",
  "vm.resume": "resume",
  "vm.destroy": "destroy",
};

/** An outcome that says the command took effect (not accepted, failed or rejected). */
const isSuccess = (e: VmEvent): boolean =>
  e.type !== "vm.command-accepted" &&
  e.type !== "vm.command-failed" &&
  e.type !== "vm.command-rejected";

/** One worker per entry, each dying the Kth time it reaches that step (K varied). */
export const SCHEDULE: string[] = [
  "before-intent@2",
  "after-intent@3",
  "mid-backend@2",
  "in-backend@3",
  "after-outcome@2",
  "before-ack@3",
];

export interface ChaosOptions {
  vms: number;
  /** VMQ_FAILPOINTS (random: name=p) of the workers after the schedule. */
  failpoints: string;
  /** VMQ_FAILPOINTS of the first workers, one each, in order (default SCHEDULE). */
  schedule?: string[];
  /** Give up (and report) after this long. */
  deadlineMs: number;
  log?: (line: string) => void;
}

export interface ChaosSummary {
  commandsSent: number;
  outcomes: number;
  lost: number;
  duplicateOutcomes: number;
  duplicatesSuppressed: number;
  restarts: number;
  /** Workers killed at each step (from their `vmq-failpoint:` lines). */
  kills: Record<Failpoint, number>;
  /** Scheduled entries whose worker did not die at that step (e.g. it ran out of commands). */
  scheduleNotFired: string[];
  /** Workers that died without a failpoint firing (should be 0). */
  otherDeaths: number;
  pendingPastDeadline: number;
  doubleEffects: string[];
  /** Successful commands the backend's call log does not show (the log would prove nothing). */
  missingEffects: string[];
  viewMismatches: string[];
  /** VMs whose commands took effect in another order than they were published. */
  outOfOrder: string[];
  outcomeTypes: Record<string, number>;
  ms: number;
}

export async function runChaos(o: ChaosOptions): Promise<ChaosSummary> {
  const began = Date.now();
  const server = await NatsServer.start();
  const nc = await server.connect();
  const prefix = testPrefix();
  const client = new VmqClient(nc, { prefix, timeoutMs: 30_000 });
  const dir = await mkdtemp(join(tmpdir(), "vmq-chaos-"));
  const args = [
    "--nats",
    server.url,
    "--prefix",
    prefix,
    "--host",
    "cx",
    "--data-dir",
    dir,
    "--noop-state-dir",
    join(dir, "noop"),
    "--noop-latency-ms",
    "10",
    "--ack-wait-ms",
    "5000",
    "--max-deliver",
    "50",
    "--log-level",
    "info",
  ];
  const schedule = [...(o.schedule ?? SCHEDULE)];
  const kills = Object.fromEntries(FAILPOINTS.map((f) => [f, 0])) as Record<Failpoint, number>;
  const scheduleNotFired: string[] = [];
  let otherDeaths = 0;
  let duplicates = 0;
  // Each worker takes the next scheduled failpoint; when none is left, the random ones.
  let planned: string | undefined;
  const spawn = () => {
    planned = schedule.shift();
    return new WorkerProcess(args, { VMQ_FAILPOINTS: planned ?? o.failpoints }).start();
  };
  // What a worker that has ended (or is stopped at the end) did, for the summary.
  const account = async (w: WorkerProcess, expected: string | undefined) => {
    await w.ended();
    duplicates += w.duplicates;
    for (const f of w.failpoints) if (f in kills) kills[f as Failpoint]++;
    if (expected && !w.failpoints.includes(expected.split("@")[0] as string))
      scheduleNotFired.push(expected);
  };
  // The first worker provisions the streams (failpoints fire only on commands, after that).
  let worker = spawn();
  await eventually(
    async () => ((await client.hosts()).some((h) => h.host === "cx") ? true : undefined),
    60_000,
    "worker ready",
  );
  let restarts = 0;
  try {
    // Every VM's whole plan is published up front: its commands keep stream order.
    const sent = new Map<string, { id: string; type: CommandType }[]>();
    for (const type of PLAN) {
      await Promise.all(
        Array.from({ length: o.vms }, async (_, i) => {
          const vmId = `cx-${i}`;
          const body = type === "vm.prepare" ? { type, vmId, spec: SPEC } : { type, vmId };
          const { command } = await client.publish("cx", body);
          sent.set(vmId, [...(sent.get(vmId) ?? []), { id: command.commandId, type }]);
        }),
      );
    }
    const total = o.vms * PLAN.length;
    const outcomesOf = async () => {
      const byVm = new Map<string, { event: VmEvent; seq: number }[]>();
      for (const vmId of sent.keys()) byVm.set(vmId, await client.history("cx", vmId));
      return byVm;
    };
    // Supervise: restart the worker whenever a failpoint killed it, until all outcomes are in.
    const reviveIfDead = async (): Promise<boolean> => {
      if (!worker.dead) return false;
      restarts++;
      const dead = worker;
      await account(dead, planned);
      if (dead.failpoints.length === 0) otherDeaths++;
      o.log?.(
        `worker died (${dead.proc?.signalCode ?? dead.proc?.exitCode}) at ${dead.failpoints.join(",") || "no failpoint"}; restart #${restarts}`,
      );
      worker = spawn();
      return true;
    };
    let histories = new Map<string, { event: VmEvent; seq: number }[]>();
    for (;;) {
      await reviveIfDead();
      histories = await outcomesOf();
      const done = [...histories.values()].reduce(
        (n, h) =>
          n + h.filter((e) => e.event.type !== "vm.command-accepted" && e.event.causationId).length,
        0,
      );
      if (done >= total || Date.now() - began > o.deadlineMs) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    // Let JetStream redeliver what the dead workers never acked: those must be harmless
    // duplicates. A worker that died right after the last outcomes never wrote their view
    // records, so settle only once a worker has run (ready) for 3 s without dying: that worker
    // has rewritten the whole view, as every restarted worker does.
    for (let settled = false; !settled && Date.now() - began < o.deadlineMs;) {
      await reviveIfDead();
      await eventually(() => worker.ready || worker.dead || undefined, 60_000, "worker ready");
      await new Promise((r) => setTimeout(r, 3_000));
      settled = !worker.dead;
    }
    histories = await outcomesOf();
    // A graceful stop writes the last view records before the process exits.
    await worker.kill("SIGTERM");
    await account(worker, planned);
    scheduleNotFired.push(...schedule);

    // Count what happened.
    const s: ChaosSummary = {
      commandsSent: total,
      outcomes: 0,
      lost: 0,
      duplicateOutcomes: 0,
      duplicatesSuppressed: 0,
      restarts,
      kills,
      scheduleNotFired,
      otherDeaths,
      pendingPastDeadline: 0,
      doubleEffects: [],
      missingEffects: [],
      viewMismatches: [],
      outOfOrder: [],
      outcomeTypes: {},
      ms: 0,
    };
    Object.assign(
      s,
      await tallyEffects({ noopDir: join(dir, "noop"), host: "cx", sent, histories, client }),
    );
    s.duplicatesSuppressed = duplicates;
    s.ms = Date.now() - began;
    return s;
  } finally {
    await worker.kill();
    await nc.close();
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

export type Sent = Map<string, { id: string; type: CommandType }[]>;
export type Histories = Map<string, { event: VmEvent; seq: number }[]>;
export type EffectTally = Pick<
  ChaosSummary,
  | "outcomes"
  | "lost"
  | "duplicateOutcomes"
  | "pendingPastDeadline"
  | "doubleEffects"
  | "missingEffects"
  | "viewMismatches"
  | "outOfOrder"
  | "outcomeTypes"
>;

/**
 * What the commands did, from the VMs' histories, the Noop's call log (the only witness of
 * backend effects) and the view: lost and duplicate outcomes, double or missing effects, order
 * per VM, and view records that differ from a replay.
 */
export async function tallyEffects(o: {
  noopDir: string;
  host: string;
  sent: Sent;
  histories: Histories;
  client: VmqClient;
  /**
   * A SIGKILL at any instant (not at a failpoint) can land between the Noop's state write and
   * its call-log line: an outcome the next worker read back from the backend (`reconciled`)
   * then has its effect without the line. Only such outcomes may miss their line.
   */
  reconciledMayMissLog?: boolean;
}): Promise<EffectTally> {
  const { sent, histories, client } = o;
  const s: EffectTally = {
    outcomes: 0,
    lost: 0,
    duplicateOutcomes: 0,
    pendingPastDeadline: 0,
    doubleEffects: [],
    missingEffects: [],
    viewMismatches: [],
    outOfOrder: [],
    outcomeTypes: {},
  };
  // The Noop's call log is the only witness of backend effects: a missing one must not read
  // as "no effect, so no double effect".
  const callLog = join(o.noopDir, "calls.log");
  const calls = (
    await readFile(callLog, "utf8").catch((e: unknown) => {
      throw new Error(`chaos: the Noop call log ${callLog} cannot be read`, { cause: e });
    })
  )
    .split("\n")
    .filter(Boolean);
  for (const [vmId, cmds] of sent) {
    const h = histories.get(vmId) ?? [];
    for (const c of cmds) {
      const outs = h.filter(
        (e) => e.event.causationId === c.id && e.event.type !== "vm.command-accepted",
      );
      if (outs.length === 0) s.lost++;
      if (outs.length > 1) s.duplicateOutcomes++;
      if (outs[0]) {
        s.outcomes++;
        const key =
          outs[0].event.type === "vm.command-failed" || outs[0].event.type === "vm.command-rejected"
            ? `${outs[0].event.type} ${outs[0].event.code}`
            : outs[0].event.type;
        s.outcomeTypes[key] = (s.outcomeTypes[key] ?? 0) + 1;
      }
    }
    // One VM's commands take effect in stream order: outcomes come in the order sent.
    const order = cmds.map((c) => c.id);
    const positions = h
      .filter((e) => e.event.type !== "vm.command-accepted" && e.event.causationId)
      .map((e) => order.indexOf(e.event.causationId as string));
    if (positions.some((i, k) => k > 0 && i < (positions[k - 1] as number)))
      s.outOfOrder.push(`${vmId}: outcomes in command order ${positions.join(",")}`);
    // No guest was started or stopped twice: backend effects never exceed the commands asking
    // for them. And the log did see them: every command that succeeded had its effect.
    for (const [cmd, op] of Object.entries(EFFECT)) {
      const asked = cmds.filter((c) => c.type === cmd).length;
      const succeeded = cmds.filter(
        (c) =>
          c.type === cmd &&
          h.some(
            (e) =>
              e.event.causationId === c.id &&
              isSuccess(e.event) &&
              !(o.reconciledMayMissLog && "reconciled" in e.event && e.event.reconciled),
          ),
      ).length;
      const done = calls.filter((l) => l === `${op} ${vmId}`).length;
      if (done > asked) s.doubleEffects.push(`${vmId}: ${op} x${done} for ${asked} command(s)`);
      if (done < succeeded)
        s.missingEffects.push(`${vmId}: ${op} x${done} logged for ${succeeded} success(es)`);
    }
    const replayed = replayVm(vmId, o.host, h);
    if (replayed.pending && Date.parse(replayed.pending.deadline) < Date.now())
      s.pendingPastDeadline++;
    const view = await client.get(vmId);
    const expected = toView(replayed);
    if (
      expected &&
      (view?.lastEventSeq !== expected.lastEventSeq || view.state !== expected.state)
    ) {
      s.viewMismatches.push(
        `${vmId}: view ${view?.state}@${view?.lastEventSeq} vs replay ${expected.state}@${expected.lastEventSeq}`,
      );
    }
  }
  return s;
}
