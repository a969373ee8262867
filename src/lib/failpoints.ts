import { writeSync } from "node:fs";

/**
 * Crash points for fault tests. VMQ_FAILPOINTS is a comma-separated list of
 *   name=p   SIGKILL at that step with probability p, each time it is reached;
 *   name@N   SIGKILL the Nth time this process reaches that step (deterministic);
 *   name~N   SIGSTOP itself the Nth time: a stalled worker, for the test to SIGCONT later.
 * e.g. VMQ_FAILPOINTS="after-intent=0.05,mid-backend@2". Just before the kill the process writes
 * `vmq-failpoint: <name>` to stderr, so a supervisor knows which step fired. Unset (always, in
 * production), every check is one Map lookup on an empty map.
 */
/** The steps of a command, in order: what the chaos run kills the worker at. */
export const COMMAND_FAILPOINTS = [
  "before-intent",
  "after-intent",
  /** Inside a backend lifecycle call, before its effect (a backend wrapped in FaultyBackend). */
  "mid-backend",
  /** The backend call has returned, its outcome is not recorded yet. */
  "in-backend",
  "after-outcome",
  "before-ack",
] as const;
/** The steps of a compaction (tested in worker-compaction; the chaos run never compacts). */
export const COMPACTION_FAILPOINTS = [
  /** Compaction: the tombstone is written, the VM's events are not purged yet. */
  "after-tombstone",
  /** Compaction: the events are purged, the VM is still in the worker's cache. */
  "after-purge",
] as const;
/** Just before a view record is sent (the fenced-write test stalls a worker here). */
export const VIEW_FAILPOINTS = ["before-view-write"] as const;
/** The steps of a QEMU stop's escalation (tested in worker-qemu-stop-crash). */
export const STOP_FAILPOINTS = [
  /** An ACPI power-button press was sent; the graceful window runs. */
  "stop-graceful",
  /** The graceful window is over; SIGTERM is about to be sent. */
  "stop-sigterm",
  /** SIGTERM was ignored; SIGKILL is about to be sent. */
  "stop-sigkill",
] as const;
/** Half-way through an image download into the host cache (tested in images.test). */
export const IMAGE_FAILPOINTS = ["mid-image-fetch"] as const;
/**
 * A move: half-way through sending an exported disk (in the source's worker), and after each
 * step the move's record says is done (in the process that runs the move: vmq move, the SDK).
 */
export const MOVE_FAILPOINTS = ["mid-disk-export", "move-step"] as const;
export const FAILPOINTS = [
  ...COMMAND_FAILPOINTS,
  ...IMAGE_FAILPOINTS,
  ...MOVE_FAILPOINTS,
  ...COMPACTION_FAILPOINTS,
  ...VIEW_FAILPOINTS,
  ...STOP_FAILPOINTS,
] as const;
export type CommandFailpoint = (typeof COMMAND_FAILPOINTS)[number];
export type Failpoint = (typeof FAILPOINTS)[number];

interface Point {
  p: number;
  at: number;
  stallAt: number;
  hits: number;
}

const points = new Map<string, Point>();
for (const part of (process.env.VMQ_FAILPOINTS ?? "").split(",")) {
  const m = /^\s*([\w-]+)\s*([=@~])\s*(\S+)\s*$/.exec(part);
  if (!m) continue;
  const [, name = "", op, value] = m;
  const point = points.get(name) ?? { p: 0, at: 0, stallAt: 0, hits: 0 };
  if (op === "=") point.p = Number(value);
  else if (op === "~") point.stallAt = Number(value);
  else point.at = Number(value);
  points.set(name, point);
}

export function failpoint(name: Failpoint): void {
  const point = points.get(name);
  if (point === undefined) return;
  point.hits++;
  if (point.hits === point.stallAt) {
    writeSync(2, `vmq-failpoint: ${name} (stalled)\n`);
    process.kill(process.pid, "SIGSTOP");
    return;
  }
  if (point.hits === point.at || Math.random() < point.p) {
    writeSync(2, `vmq-failpoint: ${name}\n`);
    process.kill(process.pid, "SIGKILL");
  }
}
