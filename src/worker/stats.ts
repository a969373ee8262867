import { ImageStats } from "./images/image-stats.js";

/** Counters the worker keeps for its host record, health and metrics. */
export class WorkerStats {
  /** The host image cache's counters. */
  readonly images = new ImageStats();
  commands = new Map<string, number>(); // `${type}|${outcome}` -> count
  redeliveries = 0;
  deadLettered = 0;
  duplicates = 0;
  conflicts = 0;
  /** Earlier commands of a VM run ahead of a later one that arrived first (after a crash). */
  reordered = 0;
  /** Commands sent back to the stream after a transient backend failure (nak with a delay). */
  retried = 0;
  /** The command consumer was started again (its durable was gone, or its loop ended). */
  consumerRestarts = 0;
  /** Destroyed VMs reduced to their tombstone, and the events that went with them. */
  compacted = 0;
  purgedEvents = 0;
  /** Purges the NATS permissions refused (the events of compacted VMs stay). */
  purgeRefused = 0;
  /** Where compaction time goes, per step (ms, summed over VMs; concurrent steps overlap). */
  readonly compactionMs = { tombstone: 0, view: 0, purge: 0 };
  inFlight = 0;
  observed = 0;
  replayMs = 0;
  replayedEvents = 0;
  replayFrom: "snapshot" | "full" = "full";
  /** Where command durations go (the metrics histogram, when metrics are on). */
  onDuration: ((type: string, ms: number) => void) | undefined;

  count(type: string, outcome: string): void {
    const k = `${type}|${outcome}`;
    this.commands.set(k, (this.commands.get(k) ?? 0) + 1);
  }

  total(outcome?: string): number {
    let n = 0;
    for (const [k, v] of this.commands) if (!outcome || k.endsWith(`|${outcome}`)) n += v;
    return n;
  }
}
