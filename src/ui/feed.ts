import type { Subscription } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import type { VmqClient } from "../client/index.js";
import { latestValues } from "../client/kv-scan.js";
import { jsonOf } from "../client/wire.js";
import {
  HostRecord,
  currentView,
  viewRecordAt,
  type VmEvent,
  type VmView,
} from "../contracts/index.js";
import type { Logger } from "../observability/logger.js";
import { sleep } from "../lib/time.js";

/** How many recent events the feed keeps for a page that opens (and sends on connect). */
const RECENT_EVENTS = 500;
/** Seconds of per-second figures kept for the plot. */
const STATS_SECONDS = 600;
/** Deltas are batched this long: a burst of events is one message to each page. */
const FLUSH_MS = 50;
/** A full re-read of both buckets: catches a missed message and records deleted meanwhile. */
const RESYNC_MS = 30_000;

export interface FeedEvent {
  seq: number;
  event: unknown;
}
export interface StatsPoint {
  /** Unix second. */
  t: number;
  commands: number;
  outcomes: number;
  /** Mean and max outcome latency (issued → outcome), ms; null without outcomes. */
  meanMs: number | null;
  maxMs: number | null;
}
export interface Delta {
  vms?: VmView[];
  vmsRemoved?: string[];
  hosts?: { key: string; host: HostRecord }[];
  hostsRemoved?: string[];
  events?: FeedEvent[];
  stats?: StatsPoint[];
}

/** User-data never leaves the server, sealed or not: the page shows specs without it. */
export function redact(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(redact);
  if (v && typeof v === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v))
      if (k !== "userData" && k !== "sealedUserData") out[k] = redact(x);
    return out;
  }
  return v;
}

/**
 * The fleet as the pages see it, kept live: the `vmq-hosts` and `vmq-vms` buckets (a core
 * subscription on their `$KV` subjects: no consumer to stall, re-read in full now and then)
 * and the events stream (the SDK's watch). Changes go to every listener in small batches.
 */
export class Feed {
  readonly hosts = new Map<string, HostRecord>();
  /** vmId → its records (one per host key, a v1 leftover), and the one that speaks for it. */
  readonly #records = new Map<string, Map<string, VmView>>();
  readonly vms = new Map<string, VmView>();
  readonly events: FeedEvent[] = [];
  /** The hosts bucket's TTL: a record older than this has expired. */
  hostTtlMs = 0;
  readonly #stats = new Map<number, { c: number; o: number; sum: number; max: number }>();
  /** commandId → when it was issued (ms), to measure the outcome latency. */
  readonly #issued = new Map<string, number>();
  readonly #listeners = new Set<(d: Delta) => void>();
  #pending: Required<Omit<Delta, "stats">> = empty();
  #timer: NodeJS.Timeout | undefined;
  readonly #subs: Subscription[] = [];
  readonly #abort = new AbortController();
  readonly #loops: Promise<void>[] = [];

  constructor(
    private readonly client: VmqClient,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    const { names, nc } = this.client;
    // Subscribed before the first read: nothing written in between is missed.
    for (const [bucket, apply] of [
      [names.vmsBucket, (k: string, d: Uint8Array | null) => this.#applyVm(k, d)],
      [names.hostsBucket, (k: string, d: Uint8Array | null) => this.#applyHost(k, d)],
    ] as const) {
      const prefix = `$KV.${bucket}.`;
      this.#subs.push(
        nc.subscribe(`${prefix}>`, {
          callback: (_e, m) => {
            const op = m.headers?.get("KV-Operation");
            apply(m.subject.slice(prefix.length), op === "DEL" || op === "PURGE" ? null : m.data);
          },
        }),
      );
    }
    await this.#resync();
    const info = await (await jetstreamManager(nc)).streams.info(`KV_${names.hostsBucket}`);
    this.hostTtlMs = Math.round(info.config.max_age / 1e6);
    this.#loops.push(this.#followEvents(), this.#resyncLoop());
  }

  async stop(): Promise<void> {
    this.#abort.abort();
    for (const s of this.#subs) s.unsubscribe();
    clearTimeout(this.#timer);
    await Promise.allSettled(this.#loops);
  }

  /** Everything a page needs to draw at once. */
  snapshot(): Delta {
    return {
      hosts: [...this.hosts].map(([key, host]) => ({ key, host })),
      vms: [...this.vms.values()],
      events: this.events.slice(-200),
      stats: this.stats(),
    };
  }

  subscribe(fn: (d: Delta) => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  stats(): StatsPoint[] {
    const now = Math.floor(Date.now() / 1000);
    const out: StatsPoint[] = [];
    for (let t = now - 300; t < now; t++) {
      const s = this.#stats.get(t);
      out.push({
        t,
        commands: s?.c ?? 0,
        outcomes: s?.o ?? 0,
        meanMs: s && s.o > 0 ? Math.round(s.sum / s.o) : null,
        maxMs: s && s.o > 0 ? s.max : null,
      });
    }
    return out;
  }

  async #resync(): Promise<void> {
    const jsm = await jetstreamManager(this.client.nc);
    const { names } = this.client;
    const [vms, hosts] = await Promise.all([
      latestValues(jsm, names.vmsBucket),
      latestValues(jsm, names.hostsBucket),
    ]);
    const seenVm = new Set(vms.map((v) => v.key));
    for (const [vmId, recs] of this.#records)
      for (const key of [...recs.keys()]) if (!seenVm.has(key)) this.#applyVm(key, null, vmId);
    for (const { key, data } of vms) this.#applyVm(key, data);
    // Hosts are not dropped here: one that stopped beating stays, shown as expired.
    for (const { key, data } of hosts) this.#applyHost(key, data);
  }

  async #resyncLoop(): Promise<void> {
    while (!this.#abort.signal.aborted) {
      await sleep(RESYNC_MS, this.#abort.signal).catch(() => undefined);
      if (this.#abort.signal.aborted) return;
      await this.#resync().catch((e: unknown) => this.log.warn({ err: e }, "ui: resync failed"));
    }
  }

  #applyVm(key: string, data: Uint8Array | null, knownVmId?: string): void {
    const view = data ? viewRecordAt(key, jsonOf(data)) : undefined;
    const vmId = view?.vmId ?? knownVmId ?? key.slice(key.indexOf(".") + 1);
    if (data && !view) return; // not a record of its key: ignored, as the SDK does
    const recs = this.#records.get(vmId) ?? new Map<string, VmView>();
    const old = recs.get(key);
    // A re-read may race a newer live write: never step a record back.
    if (view && old && Date.parse(old.updatedAt) > Date.parse(view.updatedAt)) return;
    if (view) recs.set(key, view);
    else recs.delete(key);
    if (recs.size) this.#records.set(vmId, recs);
    else this.#records.delete(vmId);
    const cur = currentView([...recs].map(([k, v]) => ({ key: k, view: v })));
    const before = this.vms.get(vmId);
    if (cur) {
      if (before && before.updatedAt === cur.updatedAt && before.host === cur.host) return;
      this.vms.set(vmId, cur);
      this.#pending.vmsRemoved = this.#pending.vmsRemoved.filter((id) => id !== vmId);
      this.#pending.vms.push(cur);
    } else if (before) {
      this.vms.delete(vmId);
      this.#pending.vmsRemoved.push(vmId);
    }
    this.#schedule();
  }

  #applyHost(key: string, data: Uint8Array | null): void {
    if (!data) {
      this.hosts.delete(key);
      this.#pending.hostsRemoved.push(key);
    } else {
      const r = HostRecord.safeParse(jsonOf(data));
      if (!r.success) return;
      this.hosts.set(key, r.data);
      this.#pending.hosts.push({ key, host: r.data });
    }
    this.#schedule();
  }

  async #followEvents(): Promise<void> {
    const signal = this.#abort.signal;
    let afterSeq = 0;
    try {
      const jsm = await jetstreamManager(this.client.nc);
      const last = (await jsm.streams.info(this.client.names.eventsStream)).state.last_seq;
      afterSeq = Math.max(0, last - RECENT_EVENTS);
    } catch (e) {
      this.log.warn({ err: e }, "ui: cannot read the events stream's state");
    }
    while (!signal.aborted) {
      try {
        for await (const { event, seq } of this.client.watch(
          {},
          { signal, ...(afterSeq > 0 ? { afterSeq } : {}), onUnreadable: () => undefined },
        )) {
          afterSeq = seq;
          this.#onEvent(event, seq);
        }
      } catch (e) {
        if (signal.aborted) return;
        this.log.warn({ err: e }, "ui: the event watch broke; following again");
        await sleep(1_000, signal).catch(() => undefined);
      }
    }
  }

  #onEvent(event: VmEvent, seq: number): void {
    const fe = { seq, event: redact(event) };
    this.events.push(fe);
    if (this.events.length > RECENT_EVENTS)
      this.events.splice(0, this.events.length - RECENT_EVENTS);
    this.#pending.events.push(fe);
    const sec = Math.floor(Date.parse(event.at) / 1000);
    const s = this.#stats.get(sec) ?? { c: 0, o: 0, sum: 0, max: 0 };
    if (event.type === "vm.command-accepted") {
      s.c++;
      this.#issued.set(event.command.commandId, Date.parse(event.command.issuedAt));
      if (this.#issued.size > 10_000) {
        const first = this.#issued.keys().next().value;
        if (first !== undefined) this.#issued.delete(first);
      }
    } else if (event.causationId && this.#issued.has(event.causationId)) {
      const ms = Math.max(0, Date.parse(event.at) - (this.#issued.get(event.causationId) ?? 0));
      this.#issued.delete(event.causationId);
      s.o++;
      s.sum += ms;
      s.max = Math.max(s.max, ms);
    }
    this.#stats.set(sec, s);
    for (const t of this.#stats.keys()) if (t < sec - STATS_SECONDS) this.#stats.delete(t);
    this.#schedule();
  }

  #schedule(): void {
    this.#timer ??= setTimeout(() => {
      this.#timer = undefined;
      const d = this.#pending;
      this.#pending = empty();
      for (const fn of this.#listeners) fn(d);
    }, FLUSH_MS);
  }
}

const empty = (): Required<Omit<Delta, "stats">> => ({
  vms: [],
  vmsRemoved: [],
  hosts: [],
  hostsRemoved: [],
  events: [],
});
