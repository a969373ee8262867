import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

export interface StreamUse {
  stream: string;
  messages: number;
  bytes: number;
  /** -1: none. */
  maxBytes: number;
  /** 0: none. */
  maxAgeMs: number;
}

/** What the metrics read at scrape time; the worker provides it (no hot-path cost). */
export interface MetricsSource {
  commands(): Map<string, number>; // `${type}|${outcome}` -> count
  counters(): {
    redeliveries: number;
    deadLettered: number;
    duplicates: number;
    conflicts: number;
    reordered: number;
    observed: number;
    consumerRestarts: number;
    compacted: number;
    purgedEvents: number;
    purgeRefused: number;
    retried: number;
    /** ms per compaction step, summed over VMs. */
    compactionMs?: { tombstone: number; view: number; purge: number };
  };
  inFlight(): number;
  queued(): number;
  waiting(): number;
  vmsByState(): Record<string, number>;
  natsConnected(): boolean;
  workerState(): string;
  replay(): { ms: number; events: number; from: string };
  /** Each step of the worker's last start, in order (ServiceStack.timings). */
  startSteps?: () => readonly { step: string; ms: number }[];
  /** The host image cache's counters (src/worker/images/image-stats.ts). */
  images?: () => {
    hits: number;
    misses: number;
    fetches: number;
    fetchedBytes: number;
    fetchSeconds: number;
    failures: number;
    evicted: number;
    cachedBytes: number;
    downloading: number;
    downloadingBytes: number;
  };
  /** Size and limits of the streams the host writes (read at scrape time; a failure skips them). */
  streams?(): Promise<StreamUse[]>;
}

const WORKER_STATES = ["starting", "running", "draining", "stopped", "failed"];

/** The worker's Prometheus registry (prom-client), with process metrics. */
export function createMetrics(source: MetricsSource): {
  registry: Registry;
  observeDuration: (type: string, ms: number) => void;
} {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: "vmq_" });
  const reg = { registers: [registry] };
  new Counter({
    name: "vmq_commands_total",
    help: "Commands handled, by type and outcome (succeeded, failed, rejected).",
    labelNames: ["type", "outcome"],
    ...reg,
    collect() {
      this.reset();
      for (const [k, v] of source.commands()) {
        const [type = "", outcome = ""] = k.split("|");
        this.inc({ type, outcome }, v);
      }
    },
  });
  const durations = new Histogram({
    name: "vmq_command_duration_seconds",
    help: "Time from decision to recorded outcome, by command type.",
    labelNames: ["type"],
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300],
    ...reg,
  });
  type Counted = Exclude<keyof ReturnType<MetricsSource["counters"]>, "compactionMs">;
  const counter = (name: string, help: string, key: Counted) =>
    new Counter({
      name,
      help,
      ...reg,
      collect() {
        this.reset();
        this.inc(source.counters()[key]);
      },
    });
  counter("vmq_redeliveries_total", "Commands JetStream delivered again.", "redeliveries");
  counter("vmq_dead_lettered_total", "Commands copied to the DLQ.", "deadLettered");
  counter("vmq_duplicates_total", "Commands whose commandId already had an outcome.", "duplicates");
  counter(
    "vmq_conflicts_total",
    "Appends that met another writer (reload and re-decide).",
    "conflicts",
  );
  counter(
    "vmq_reordered_total",
    "Earlier commands of a VM run before a later one that was delivered first (after a crash).",
    "reordered",
  );
  counter(
    "vmq_retried_total",
    "Commands sent back to the stream after a transient backend failure (nak with a delay).",
    "retried",
  );
  counter(
    "vmq_consumer_restarts_total",
    "Times the command consumer was started again (durable deleted or lost, loop ended).",
    "consumerRestarts",
  );
  counter(
    "vmq_vms_compacted_total",
    "Destroyed VMs past the retention window reduced to their tombstone (events purged).",
    "compacted",
  );
  counter("vmq_events_purged_total", "Events purged by compaction.", "purgedEvents");
  new Counter({
    name: "vmq_compaction_seconds_total",
    help: "Time spent in each compaction step (tombstone, view, purge), summed over VMs compacted concurrently.",
    labelNames: ["step"],
    ...reg,
    collect() {
      this.reset();
      const ms = source.counters().compactionMs;
      if (ms) for (const [step, v] of Object.entries(ms)) this.inc({ step }, v / 1000);
    },
  });
  counter(
    "vmq_compaction_purges_refused_total",
    "Purges NATS refused for want of the right (the compacted VMs' events stay).",
    "purgeRefused",
  );
  counter(
    "vmq_observed_changes_total",
    "Changes backends reported that no command explains.",
    "observed",
  );
  const images = source.images;
  if (images) {
    const image = (
      name: string,
      help: string,
      key: keyof ReturnType<typeof images>,
      gauge = false,
    ) =>
      gauge
        ? new Gauge({
            name,
            help,
            ...reg,
            collect() {
              this.set(images()[key]);
            },
          })
        : new Counter({
            name,
            help,
            ...reg,
            collect() {
              this.reset();
              this.inc(images()[key]);
            },
          });
    image("vmq_image_cache_hits_total", "Prepares whose image was already cached.", "hits");
    image("vmq_image_cache_misses_total", "Prepares that waited for an image download.", "misses");
    image("vmq_image_fetches_total", "Image downloads finished and verified.", "fetches");
    image("vmq_image_fetched_bytes_total", "Bytes of verified image downloads.", "fetchedBytes");
    image(
      "vmq_image_fetch_seconds_total",
      "Time spent in verified image downloads.",
      "fetchSeconds",
    );
    image(
      "vmq_image_fetch_failures_total",
      "Image downloads that failed (digest, NATS).",
      "failures",
    );
    image("vmq_image_evictions_total", "Cached images evicted for the cache cap.", "evicted");
    image("vmq_image_cache_bytes", "Bytes of verified images in the cache.", "cachedBytes", true);
    image(
      "vmq_image_downloads",
      "Image downloads under way (prepares wait on them).",
      "downloading",
      true,
    );
    image(
      "vmq_image_downloading_bytes",
      "Bytes received so far by the image downloads under way.",
      "downloadingBytes",
      true,
    );
  }
  const streams = async (): Promise<StreamUse[]> =>
    (await source.streams?.().catch(() => [])) ?? [];
  const streamGauge = (name: string, help: string, value: (u: StreamUse) => number) =>
    new Gauge({
      name,
      help,
      labelNames: ["stream"],
      ...reg,
      async collect() {
        this.reset();
        for (const u of await streams()) this.set({ stream: u.stream }, value(u));
      },
    });
  streamGauge("vmq_stream_messages", "Messages in a stream the worker writes.", (u) => u.messages);
  streamGauge("vmq_stream_bytes", "Bytes in a stream the worker writes.", (u) => u.bytes);
  streamGauge("vmq_stream_max_bytes", "A stream's size limit (-1: none).", (u) => u.maxBytes);
  streamGauge(
    "vmq_stream_max_age_seconds",
    "A stream's age limit (0: none).",
    (u) => u.maxAgeMs / 1000,
  );
  new Gauge({
    name: "vmq_commands_in_flight",
    help: "Commands running now.",
    ...reg,
    collect() {
      this.set(source.inFlight());
    },
  });
  new Gauge({
    name: "vmq_commands_queued",
    help: "Commands waiting behind a busy VM.",
    ...reg,
    collect() {
      this.set(source.queued());
    },
  });
  new Gauge({
    name: "vmq_commands_waiting",
    help: "Commands sent back to the stream (a transient failure, or behind an earlier one) with no outcome yet.",
    ...reg,
    collect() {
      this.set(source.waiting());
    },
  });
  new Gauge({
    name: "vmq_vms",
    help: "VMs of this host by state.",
    labelNames: ["state"],
    ...reg,
    collect() {
      this.reset();
      for (const [state, n] of Object.entries(source.vmsByState())) this.set({ state }, n);
    },
  });
  new Gauge({
    name: "vmq_nats_connected",
    help: "1 while connected to NATS.",
    ...reg,
    collect() {
      this.set(source.natsConnected() ? 1 : 0);
    },
  });
  new Gauge({
    name: "vmq_worker_state",
    help: "1 for the worker's current state.",
    labelNames: ["state"],
    ...reg,
    collect() {
      const now = source.workerState();
      for (const s of WORKER_STATES) this.set({ state: s }, s === now ? 1 : 0);
    },
  });
  new Gauge({
    name: "vmq_replay_duration_seconds",
    help: "How long the start-up replay took.",
    ...reg,
    collect() {
      this.set(source.replay().ms / 1000);
    },
  });
  new Gauge({
    name: "vmq_start_step_seconds",
    help: 'How long each step of the worker\'s last start took ("host state" is the snapshot load and the replay).',
    labelNames: ["step"],
    ...reg,
    collect() {
      this.reset();
      for (const { step, ms } of source.startSteps?.() ?? []) this.set({ step }, ms / 1000);
    },
  });
  new Gauge({
    name: "vmq_replayed_events",
    help: "Events replayed at start-up (after the snapshot, if one was used).",
    ...reg,
    collect() {
      this.set(source.replay().events);
    },
  });
  return { registry, observeDuration: (type, ms) => durations.observe({ type }, ms / 1000) };
}
