/**
 * Watches the server's per-message advisories of one durable consumer, so a test can tell how a
 * message was settled: `term()` (MSG_TERMINATED, never delivered again), `nak()` (MSG_NAKED) or
 * running out of deliveries (MAX_DELIVERIES). Counting pending acks cannot tell these apart:
 * a nak'd message also stops being pending once its deliveries run out.
 */
import type { NatsConnection, Subscription } from "@nats-io/transport-node";

interface Advisory {
  stream: string;
  consumer: string;
  stream_seq: number;
  deliveries: number;
}

export class AckAdvisories {
  /** stream_seq -> the `deliveries` of each MSG_TERMINATED advisory for it. */
  readonly terminated = new Map<number, number[]>();
  /** stream_seq -> MSG_NAKED advisories seen for it. */
  readonly naked = new Map<number, number>();
  /** stream_seq -> MAX_DELIVERIES advisories seen for it. */
  readonly maxDeliveries = new Map<number, number>();
  readonly #subs: Subscription[];
  readonly #waiters = new Set<() => void>();

  private constructor(nc: NatsConnection, stream: string, consumer: string) {
    const kinds: [string, (a: Advisory) => void][] = [
      [
        "MSG_TERMINATED",
        (a) =>
          this.terminated.set(a.stream_seq, [
            ...(this.terminated.get(a.stream_seq) ?? []),
            a.deliveries,
          ]),
      ],
      ["MSG_NAKED", (a) => this.naked.set(a.stream_seq, (this.naked.get(a.stream_seq) ?? 0) + 1)],
      [
        "MAX_DELIVERIES",
        (a) =>
          this.maxDeliveries.set(a.stream_seq, (this.maxDeliveries.get(a.stream_seq) ?? 0) + 1),
      ],
    ];
    this.#subs = kinds.map(([kind, record]) =>
      nc.subscribe(`$JS.EVENT.ADVISORY.CONSUMER.${kind}.${stream}.${consumer}`, {
        callback: (err, m) => {
          if (err) return;
          record(m.json<Advisory>());
          for (const w of this.#waiters) w();
        },
      }),
    );
  }

  /** Subscribes and waits until the server has the interest (so no advisory is missed). */
  static async watch(nc: NatsConnection, stream: string, consumer: string): Promise<AckAdvisories> {
    const a = new AckAdvisories(nc, stream, consumer);
    await nc.flush();
    return a;
  }

  /**
   * Resolves once `seq` was terminated; rejects at once if it was nak'd or ran out of deliveries
   * instead, or after `timeoutMs`.
   */
  async terminatedOnce(seq: number, timeoutMs = 10_000): Promise<number[]> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const bad = this.#notTerminated(seq);
        if (bad) {
          done();
          reject(new Error(bad));
          return true;
        }
        const t = this.terminated.get(seq);
        if (t) {
          done();
          resolve(t);
          return true;
        }
        return false;
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`message ${seq} was not terminated within ${timeoutMs} ms`));
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        this.#waiters.delete(waiter);
      };
      const waiter = (): void => void check();
      if (!check()) this.#waiters.add(waiter);
    });
  }

  /** Why `seq` was not simply terminated on its first delivery, or undefined. */
  #notTerminated(seq: number): string | undefined {
    const naks = this.naked.get(seq) ?? 0;
    if (naks) return `message ${seq} was nak'd ${naks} time(s) instead of terminated`;
    if (this.maxDeliveries.has(seq)) return `message ${seq} ran out of deliveries`;
    const t = this.terminated.get(seq);
    if (t && (t.length !== 1 || t[0] !== 1))
      return `message ${seq} was terminated ${t.length} time(s), at deliveries ${t.join(", ")}; want once, on its first delivery`;
    return undefined;
  }

  /** Throws unless `seq` was terminated exactly once, on its first delivery, and never nak'd. */
  assertTerminatedOnce(seq: number): void {
    const bad =
      this.#notTerminated(seq) ??
      (this.terminated.has(seq) ? undefined : `message ${seq} was never terminated`);
    if (bad) throw new Error(bad);
  }

  close(): void {
    for (const s of this.#subs) s.unsubscribe();
  }
}
