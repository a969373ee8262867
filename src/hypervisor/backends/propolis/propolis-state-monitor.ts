/**
 * One long-poll loop per VM over GET /instance/state-monitor. It asks for last_seen_gen + 1,
 * survives dropped connections (backoff, then a resync that asks for gen 1 to learn the
 * server's current generation), and starts a new epoch when the generation restarts (a fresh
 * server process or a re-ensure). Intermediate generations may be skipped: the server is a
 * watch channel, so consumers must derive changes from (previous, current).
 */
import { backoffMs, sleep } from "../../../lib/time.js";
import { isVmqError } from "../../../lib/errors.js";
import type { InstanceState } from "./propolis-api.js";
import type { PropolisClient } from "./propolis-client.js";

export interface MonitorUpdate {
  gen: number;
  state: InstanceState;
  /** The state seen before in the same epoch (undefined at the start of an epoch). */
  previous: InstanceState | undefined;
  /** Bumped whenever the generation sequence restarts. */
  epoch: number;
}

export interface StateMonitorOptions {
  onUpdate?: (u: MonitorUpdate) => void;
  /** Errors other than the expected connection/teardown ones (for logs). */
  onError?: (e: unknown) => void;
  backoffBaseMs?: number;
  backoffCapMs?: number;
}

interface Waiter {
  pred: (s: InstanceState) => boolean;
  resolve: (s: InstanceState) => void;
}

const RESYNC_CODES = new Set(["propolis::unreachable", "propolis::gone", "propolis::no-instance"]);

export class PropolisStateMonitor {
  readonly #client: PropolisClient;
  readonly #opts: StateMonitorOptions;
  #last = 0;
  #latest: { gen: number; state: InstanceState } | undefined;
  #epoch = 0;
  #resync = true;
  #loop: AbortController | undefined;
  #poll: AbortController | undefined;
  #running: Promise<void> | undefined;
  readonly #waiters = new Set<Waiter>();
  /** Failed polls since the last answer (for tests and health). */
  failures = 0;

  constructor(client: PropolisClient, opts: StateMonitorOptions = {}) {
    this.#client = client;
    this.#opts = opts;
  }

  get latest(): { gen: number; state: InstanceState; epoch: number } | undefined {
    return this.#latest && { ...this.#latest, epoch: this.#epoch };
  }
  get epoch(): number {
    return this.#epoch;
  }
  get active(): boolean {
    return this.#loop !== undefined;
  }

  start(): void {
    if (this.#loop) return;
    this.#resync = true; // whatever ran before, learn the server's current generation first
    const loop = new AbortController();
    this.#loop = loop;
    this.#running = this.#run(loop.signal);
  }

  /** Ends the loop (never touches the VM). */
  async stop(): Promise<void> {
    this.#loop?.abort();
    this.#loop = undefined;
    await this.#running;
    this.#running = undefined;
  }

  /** Forget the old generation sequence (call right after our own ensure); returns the epoch. */
  reset(): number {
    this.#epoch += 1;
    this.#last = 0;
    this.#latest = undefined;
    this.#resync = false;
    this.#poll?.abort();
    return this.#epoch;
  }

  /** Resolves with the first observed state (current or later) that satisfies pred. */
  waitFor(pred: (s: InstanceState) => boolean, signal?: AbortSignal): Promise<InstanceState> {
    const now = this.#latest?.state;
    if (now !== undefined && pred(now)) return Promise.resolve(now);
    return new Promise((resolve, reject) => {
      const w: Waiter = {
        pred,
        resolve: (s) => {
          signal?.removeEventListener("abort", onAbort);
          resolve(s);
        },
      };
      const onAbort = () => {
        this.#waiters.delete(w);
        reject(signal?.reason instanceof Error ? signal.reason : new Error("aborted"));
      };
      if (signal?.aborted) return onAbort();
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#waiters.add(w);
    });
  }

  async #run(stop: AbortSignal): Promise<void> {
    let attempt = 0;
    while (!stop.aborted) {
      const poll = new AbortController();
      this.#poll = poll;
      const want = this.#resync ? 1 : this.#last + 1;
      const resyncing = this.#resync;
      try {
        const r = await this.#client.monitor(want, {
          signal: AbortSignal.any([stop, poll.signal]),
        });
        attempt = 0;
        this.failures = 0;
        if (poll.signal.aborted) continue; // reset() raced with the answer: ask again
        this.#resync = false;
        if (r.gen < this.#last || (!resyncing && r.gen < want)) {
          // The server's sequence restarted behind our back (new process or someone's ensure).
          this.#epoch += 1;
          this.#latest = undefined;
        }
        this.#accept(r.gen, r.state);
      } catch (e) {
        if (stop.aborted) break;
        if (poll.signal.aborted) continue; // reset(): ask for the new sequence at once
        this.failures += 1;
        this.#resync = true;
        if (!(isVmqError(e) && RESYNC_CODES.has(e.code))) this.#opts.onError?.(e);
        attempt += 1;
        try {
          await sleep(
            backoffMs(attempt, this.#opts.backoffBaseMs ?? 100, this.#opts.backoffCapMs ?? 5_000),
            stop,
          );
        } catch {
          break;
        }
      }
    }
  }

  #accept(gen: number, state: InstanceState): void {
    const prev = this.#latest;
    if (prev && prev.gen === gen && prev.state === state) {
      this.#last = gen;
      return; // a resync answered what we knew
    }
    this.#latest = { gen, state };
    this.#last = gen;
    this.#opts.onUpdate?.({ gen, state, previous: prev?.state, epoch: this.#epoch });
    for (const w of [...this.#waiters]) {
      if (w.pred(state)) {
        this.#waiters.delete(w);
        w.resolve(state);
      }
    }
  }
}
