import { JetStreamApiError } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import { HostLease as LeaseRecord, type Evacuation } from "../../contracts/index.js";
import { VmqError } from "../../lib/errors.js";
import type { Logger } from "../../observability/logger.js";
import type { Service } from "../service-stack.js";

export type LeaseRole = "idle" | "standby" | "active" | "lost";

export interface HostLeaseDeps {
  host: string;
  /** The `vmq-leases` bucket. */
  kv: KV;
  ttlMs: number;
  /** This worker: the same across restarts on one data dir (the data dir is exclusive). */
  holder: string;
  log: Logger;
  /** Told when this worker starts waiting as a standby, and when it becomes active. */
  onRole?: (role: "standby" | "active") => void;
  /** Another worker took the lease: this one must stop. */
  onLost: (why: string) => void;
}

const isConflict = (e: unknown): boolean => e instanceof JetStreamApiError && e.code === 10071;

/**
 * At most one active worker per host id (docs/lease.md has the timing argument). The active
 * one renews its `vmq-leases` record every TTL/5 with compare-and-set on the KV revision; a
 * standby polls the record and takes it (compare-and-set again) once the same revision has stood
 * for a whole TTL of its own clock. The active worker is *fenced* (`fenced`) once TTL/2 has
 * passed since it sent its last successful renewal: backend calls then wait, well before any
 * standby can take over. The revision that took the lease is its fencing token.
 */
export class HostLease implements Service {
  readonly name = "host lease";
  role: LeaseRole = "idle";
  /** The KV revision that took the lease: higher for every later holder. */
  token = 0;
  /** ms from start() until this worker became active (a standby's takeover time included). */
  waitedMs: number | undefined;
  /**
   * The evacuation found on the lease when it was taken back: kept in this worker's records
   * until its stale copies are removed (clearEvacuation), so a crash meanwhile finds it again.
   */
  evacuation: Evacuation | undefined;
  #revision = 0;
  /** performance.now() at the send of the last renewal that succeeded. */
  #renewedAt = 0;
  #acquiredAt = "";
  #timer: NodeJS.Timeout | undefined;
  #renewing = false;
  #saidFenced = false;
  readonly #waiters = new Set<{ resolve: () => void; reject: (e: Error) => void }>();

  constructor(private readonly deps: HostLeaseDeps) {}

  get ttlMs(): number {
    return this.deps.ttlMs;
  }

  /** Backend calls must wait: not active, or no renewal has succeeded for TTL/2. */
  get fenced(): boolean {
    return this.role !== "active" || performance.now() - this.#renewedAt > this.deps.ttlMs / 2;
  }

  async start(stopping: AbortSignal): Promise<void> {
    const began = performance.now();
    await this.#acquire(stopping);
    this.waitedMs = performance.now() - began;
    this.#timer = setInterval(() => void this.#renew(), this.deps.ttlMs / 5);
    this.#timer.unref();
  }

  /** Releases the lease (a clean stop): a standby takes over at its next poll. */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    if (this.role !== "active") return;
    this.role = "idle";
    await this.deps.kv
      .delete(this.deps.host, { previousSeq: this.#revision })
      .catch((e: unknown) => this.deps.log.warn({ err: e }, "could not release the host lease"));
  }

  /** Resolves once backend calls may go on; rejects when the lease is lost or `signal` aborts. */
  wait(signal?: AbortSignal): Promise<void> {
    if (!this.fenced) return Promise.resolve();
    if (this.role === "lost") return Promise.reject(this.#lostError());
    return new Promise<void>((resolve, reject) => {
      const w = {
        resolve: () => {
          signal?.removeEventListener("abort", onAbort);
          resolve();
        },
        reject: (e: Error) => {
          signal?.removeEventListener("abort", onAbort);
          reject(e);
        },
      };
      const onAbort = () => {
        this.#waiters.delete(w);
        reject(signal?.reason as Error);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#waiters.add(w);
    });
  }

  async #acquire(stopping: AbortSignal): Promise<void> {
    const { kv, host, holder, log } = this.deps;
    const pollMs = this.deps.ttlMs / 5;
    /** The revision standing, and when this worker first saw it (after the read returned). */
    let seen: { revision: number; since: number } | undefined;
    for (;;) {
      stopping.throwIfAborted();
      try {
        const entry = await kv.get(host);
        const now = performance.now();
        if (!entry || entry.operation !== "PUT") {
          if (await this.#take(entry?.revision ?? 0)) return;
        } else {
          const rec = LeaseRecord.safeParse(entry.json());
          const ttl = Math.max(this.deps.ttlMs, rec.success ? rec.data.ttlMs : 0);
          if (seen?.revision !== entry.revision) seen = { revision: entry.revision, since: now };
          // Our own data dir's lease: a previous run of this worker, which is gone.
          const ours = rec.success && rec.data.holder === holder;
          const evacuation = rec.success ? rec.data.evacuation : undefined;
          if (evacuation) {
            // Evacuated while dead (docs/lease.md): taken back only once the evacuation is
            // complete, and never by waiting out a TTL (the evacuation does not renew).
            if (evacuation.completedAt && (await this.#take(entry.revision, evacuation))) return;
            if (!evacuation.completedAt) {
              this.#standby(`evacuation ${evacuation.id} in progress`, ttl, true);
              await sleep(pollMs, stopping);
              continue;
            }
          } else if ((ours || now - seen.since >= ttl) && (await this.#take(entry.revision)))
            return;
          this.#standby(rec.success ? rec.data.holder : undefined, ttl, false);
        }
      } catch (e) {
        log.warn({ err: e }, "could not read the host lease; trying again");
      }
      await sleep(pollMs, stopping);
    }
  }

  #standby(holder: string | undefined, ttlMs: number, evacuated: boolean): void {
    if (this.role === "standby") return;
    this.role = "standby";
    if (evacuated)
      this.deps.log.warn(
        { code: "host::evacuated", why: holder },
        "this host was evacuated: waiting for the evacuation to complete before taking the lease back",
      );
    else
      this.deps.log.info(
        { holder, ttlMs },
        "standby: another worker holds this host's lease; taking over if it stops renewing",
      );
    this.deps.onRole?.("standby");
  }

  /** The stale copies of the evacuation are gone: the next renewal drops it from the record. */
  async clearEvacuation(): Promise<void> {
    this.evacuation = undefined;
    await this.#renew();
  }

  /** Compare-and-set from `revision` (0: no record); false when another worker was faster. */
  async #take(revision: number, evacuation?: Evacuation): Promise<boolean> {
    const { kv, host, log } = this.deps;
    const sent = performance.now();
    this.#acquiredAt = new Date().toISOString();
    try {
      this.evacuation = evacuation;
      const body = this.#record(0);
      const rev =
        revision === 0 ? await kv.create(host, body) : await kv.update(host, body, revision);
      this.#revision = rev;
      this.token = rev;
      this.#renewedAt = sent;
      this.role = "active";
      log.info({ token: rev, evacuation: evacuation?.id }, "took this host's lease: active");
      this.deps.onRole?.("active");
      return true;
    } catch (e) {
      if (!isConflict(e)) throw e;
      return false;
    }
  }

  async #renew(): Promise<void> {
    if (this.#renewing || this.role !== "active") return;
    this.#renewing = true;
    const { kv, host, log, holder } = this.deps;
    const sent = performance.now();
    try {
      this.#revision = await kv.update(host, this.#record(this.token), this.#revision);
      this.#renewedAt = sent;
      if (this.#saidFenced) log.info("renewed the host lease again: backend calls go on");
      this.#saidFenced = false;
      for (const w of this.#waiters) w.resolve();
      this.#waiters.clear();
    } catch (e) {
      if (isConflict(e)) {
        // A renewal whose reply was lost may have landed: then the record is still ours.
        const now = await kv.get(host).catch(() => null);
        const rec = now?.operation === "PUT" ? LeaseRecord.safeParse(now.json()) : undefined;
        if (rec?.success && rec.data.holder === holder && rec.data.token === this.token)
          this.#revision = now?.revision ?? this.#revision;
        else this.#lose(rec?.success ? rec.data.holder : "nobody");
      } else if (this.fenced && !this.#saidFenced) {
        this.#saidFenced = true;
        log.error(
          { err: e, ttlMs: this.deps.ttlMs },
          "cannot renew the host lease for TTL/2: backend calls wait until it is renewed",
        );
      } else log.warn({ err: e }, "could not renew the host lease");
    } finally {
      this.#renewing = false;
    }
  }

  #lose(by: string): void {
    if (this.role === "lost") return;
    this.role = "lost";
    clearInterval(this.#timer);
    const err = this.#lostError();
    for (const w of this.#waiters) w.reject(err);
    this.#waiters.clear();
    this.deps.onLost(`the host's lease is held by ${by} now`);
  }

  #lostError(): VmqError {
    return new VmqError("host::lease-lost", "another worker of this host holds its lease now");
  }

  #record(token: number): string {
    const now = new Date().toISOString();
    return JSON.stringify(
      LeaseRecord.parse({
        host: this.deps.host,
        holder: this.deps.holder,
        token,
        ttlMs: this.deps.ttlMs,
        acquiredAt: this.#acquiredAt || now,
        renewedAt: now,
        ...(this.evacuation ? { evacuation: this.evacuation } : {}),
      }),
    );
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal.reason as Error);
    };
    signal.addEventListener("abort", onAbort, { once: true });
  });
}
