import type { VmEvent } from "../contracts/index.js";
import { VmqError } from "../lib/errors.js";
import type { EventStore, StoredEvent } from "./event-store.js";

/**
 * The EventStore contract in memory, for unit tests of everything above the store (the command
 * pipeline, the reconciler): one global sequence, one history per VM, the expected-sequence
 * check per VM, and an eventId appended once. It passes the same conformance suite as the
 * JetStream store (test/conformance/event-store.conformance.ts). Its eventIds stay known for
 * ever, where JetStream forgets them after its duplicate window: callers must not rely on either.
 */
export class InMemoryEventStore implements EventStore {
  /** By sequence - 1; a purged event leaves a hole (sequences are never reused). */
  readonly #log: (StoredEvent | undefined)[] = [];
  readonly #byVm = new Map<string, StoredEvent[]>();
  readonly #byEventId = new Map<string, number>();

  /** Every event appended, oldest first (a copy). */
  get events(): StoredEvent[] {
    return this.#log.filter((e) => e !== undefined);
  }

  append(event: VmEvent, expectedSeq: number): Promise<number> {
    const key = keyOf(event.host, event.vmId);
    const history = this.#byVm.get(key) ?? [];
    const actual = history.at(-1)?.seq ?? 0;
    // Like JetStream, a known eventId is found before the expectation is checked.
    if (this.#byEventId.has(event.eventId)) {
      return Promise.reject(
        new VmqError("event-store::conflict", `VM ${event.vmId} has ${event.eventId} already`, {
          details: { expected: expectedSeq, actual, duplicate: true },
        }),
      );
    }
    if (actual !== expectedSeq) {
      return Promise.reject(
        new VmqError(
          "event-store::conflict",
          `VM ${event.vmId} moved on: expected ${expectedSeq}, found ${actual}`,
          { details: { expected: expectedSeq, actual } },
        ),
      );
    }
    const stored = { event: structuredClone(event), seq: this.#log.length + 1 };
    this.#log.push(stored);
    history.push(stored);
    this.#byVm.set(key, history);
    this.#byEventId.set(event.eventId, stored.seq);
    return Promise.resolve(stored.seq);
  }

  purgeVm(
    host: string,
    vmId: string,
    throughSeq: number,
    seqs?: readonly number[],
  ): Promise<number> {
    const key = keyOf(host, vmId);
    const history = this.#byVm.get(key) ?? [];
    const named = seqs && new Set(seqs);
    const gone = history.filter((e) => e.seq <= throughSeq && (!named || named.has(e.seq)));
    for (const e of gone) this.#log[e.seq - 1] = undefined;
    this.#byVm.set(
      key,
      history.filter((e) => !gone.includes(e)),
    );
    return Promise.resolve(gone.length);
  }

  readVm(host: string, vmId: string): Promise<StoredEvent[]> {
    return Promise.resolve((this.#byVm.get(keyOf(host, vmId)) ?? []).map(copy));
  }

  async replay(
    host: string,
    afterSeq: number,
    onEvent: (e: StoredEvent) => void,
    signal?: AbortSignal,
  ): Promise<{ lastSeq: number; count: number }> {
    let lastSeq = afterSeq;
    let count = 0;
    for (const stored of this.#log.slice(afterSeq)) {
      // Yields between events, so an abort can land mid-replay as it can on a real server.
      await Promise.resolve();
      signal?.throwIfAborted();
      if (!stored || (host !== "*" && stored.event.host !== host)) continue;
      onEvent(copy(stored));
      lastSeq = stored.seq;
      count++;
    }
    signal?.throwIfAborted();
    return { lastSeq, count };
  }
}

const keyOf = (host: string, vmId: string): string => `${host}.${vmId}`;
const copy = (s: StoredEvent): StoredEvent => ({ event: structuredClone(s.event), seq: s.seq });
