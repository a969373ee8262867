import { DeliverPolicy, type JetStreamClient } from "@nats-io/jetstream";
import { CANCEL_TTL_MS, CancelRecord, cancelKey, type Names } from "../../contracts/index.js";
import type { Logger } from "../../observability/logger.js";
import { sleep, untilAborted } from "../../lib/time.js";
import type { Service } from "../service-stack.js";

/** What the command pipeline asks: was this command cancelled before it was taken? */
export interface Cancels {
  has(commandId: string): boolean;
}

/**
 * The cancels of this host's commands (`<prefix>-cancels`, keys `<host>.*`), in memory, fed by
 * an ordered consumer. start() returns once every cancel stored so far is loaded, and the worker
 * consumes commands only after that: a cancel written while the worker was down always counts.
 */
export class CancelWatch implements Service, Cancels {
  readonly name = "cancel watch";
  /** commandId -> when the cancel was asked for (ms), to forget it after the bucket's TTL. */
  readonly #cancelled = new Map<string, number>();
  readonly #stop = new AbortController();
  #loop: Promise<void> | undefined;

  constructor(
    private readonly js: JetStreamClient,
    private readonly names: Names,
    private readonly host: string,
    private readonly log: Logger,
  ) {}

  has(commandId: string): boolean {
    return this.#cancelled.has(commandId);
  }

  async start(): Promise<void> {
    const oc = await this.js.consumers.get(`KV_${this.names.cancelsBucket}`, {
      filter_subjects: `$KV.${this.names.cancelsBucket}.${this.host}.>`,
      deliver_policy: DeliverPolicy.All,
    });
    let pending = (await oc.info(true)).num_pending;
    const signal = this.#stop.signal;
    let loaded!: () => void;
    let failed!: (e: Error) => void;
    const caughtUp = new Promise<void>((resolve, reject) => {
      loaded = resolve;
      failed = reject;
    });
    if (pending === 0) loaded();
    this.#loop = (async () => {
      try {
        while (!signal.aborted) {
          const batch = await untilAborted(oc.fetch({ max_messages: 256, expires: 1_000 }), signal);
          if (!batch) break;
          for await (const m of batch) {
            this.#add(m.subject, m.data);
            pending = m.info.pending;
            if (pending === 0) loaded();
          }
          this.#forgetOld();
        }
      } catch (e) {
        if (!signal.aborted) this.log.error({ err: e }, "the cancel watch stopped");
        failed(e instanceof Error ? e : new Error(String(e)));
      } finally {
        await oc.delete().catch(() => false);
      }
    })();
    await caughtUp;
    this.log.debug({ cancels: this.#cancelled.size }, "cancels loaded");
  }

  async stop(): Promise<void> {
    this.#stop.abort();
    await Promise.race([this.#loop, sleep(2_000)]);
  }

  #add(subject: string, data: Uint8Array): void {
    let json: unknown;
    try {
      json = JSON.parse(new TextDecoder().decode(data));
    } catch {
      return;
    }
    const r = CancelRecord.safeParse(json);
    const key = subject.slice(`$KV.${this.names.cancelsBucket}.`.length);
    // A record for another host or under another key than its own is ignored (not ours).
    if (!r.success || r.data.host !== this.host || key !== cancelKey(this.host, r.data.commandId))
      return;
    this.#cancelled.set(r.data.commandId, Date.parse(r.data.requestedAt));
    this.log.info({ commandId: r.data.commandId, vmId: r.data.vmId }, "cancel requested");
  }

  #forgetOld(): void {
    const before = Date.now() - CANCEL_TTL_MS;
    for (const [id, at] of this.#cancelled) if (at < before) this.#cancelled.delete(id);
  }
}
