import { JetStreamApiError } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import { VmView } from "../../contracts/index.js";
import { failpoint } from "../../lib/failpoints.js";
import type { JetStreamPublisher } from "../../event-store/publisher.js";
import type { Logger } from "../../observability/logger.js";
import type { ViewWriter } from "../state/view-projector.js";

const enc = new TextEncoder();
/** Rounds of compare-and-set per record before it is left to the VM's next change. */
const ROUNDS = 4;

/**
 * Writes `vmq-vms` records under `<host>.<vmId>` with compare-and-set on the key's revision
 * (`Nats-Expected-Last-Subject-Sequence`), so a record only ever moves forward: a write that
 * finds another revision reads the record, and gives up when it is as new as its own
 * (`lastEventSeq`), which is what fences out a worker that lost the host's lease. PubAcks come
 * to the batched publisher's one subscription and nobody on a command's path waits for them;
 * one write per key is in flight, a newer one waits behind it (latest wins).
 */
export class KvViewWriter implements ViewWriter {
  /** The key's revision as this worker last saw it (unknown at start: found on conflict). */
  readonly #revision = new Map<string, number>();
  readonly #inFlight = new Map<string, Promise<void>>();
  readonly #next = new Map<string, { json: string; seq: number }>();
  /** VMs whose record was likely written before this worker started: read before written. */
  readonly #stored = new Set<string>();
  /** Records refused because the view held one at least as new (a later writer's). */
  refused = 0;

  constructor(
    private readonly publisher: Pick<JetStreamPublisher, "publish">,
    private readonly kv: Pick<KV, "get">,
    private readonly bucket: string,
    private readonly host: string,
    private readonly log: Logger,
  ) {}

  write(vmId: string, json: string, lastEventSeq: number): void {
    if (this.#inFlight.has(vmId)) this.#next.set(vmId, { json, seq: lastEventSeq });
    else this.#send(vmId, json, lastEventSeq);
  }

  /**
   * The VMs a replay found: their records were probably written by an earlier worker, so a
   * write starts by reading the record (one request, and none at all when it is current)
   * instead of a blind compare-and-set that is refused and then read anyway.
   */
  expectStored(vmIds: Iterable<string>): void {
    for (const id of vmIds) if (!this.#revision.has(id)) this.#stored.add(id);
  }

  async flush(): Promise<void> {
    while (this.#inFlight.size > 0) await Promise.all(this.#inFlight.values());
  }

  #send(vmId: string, json: string, seq: number): void {
    const done = this.#put(vmId, json, seq)
      .catch((e: unknown) => this.log.warn({ err: e, vmId }, "could not update the vms view"))
      .finally(() => {
        this.#inFlight.delete(vmId);
        const next = this.#next.get(vmId);
        this.#next.delete(vmId);
        if (next) this.#send(vmId, next.json, next.seq);
      });
    this.#inFlight.set(vmId, done);
  }

  async #put(vmId: string, json: string, seq: number): Promise<void> {
    const key = `${this.host}.${vmId}`;
    const subject = `$KV.${this.bucket}.${key}`;
    for (let round = 0; round < ROUNDS; round++) {
      failpoint("before-view-write");
      if (round === 0 && this.#stored.delete(vmId)) {
        const r = await this.#current(vmId, key, seq);
        if (r === "current") return;
      }
      try {
        const ack = await this.publisher.publish(subject, enc.encode(json), {
          expectedLastSubjectSeq: this.#revision.get(vmId) ?? 0,
        });
        this.#revision.set(vmId, ack.seq);
        return;
      } catch (e) {
        if (!(e instanceof JetStreamApiError && e.code === 10071)) throw e;
      }
      // Someone else wrote the key (or this worker has not seen it since it started).
      if ((await this.#current(vmId, key, seq)) === "current") return;
    }
    this.log.warn({ vmId }, "view record kept changing under this write; left to the next one");
  }

  /** Reads the stored record and its revision: "current" when it is at least as new as `seq`. */
  async #current(vmId: string, key: string, seq: number): Promise<"current" | "older"> {
    const current = await this.kv.get(key);
    this.#revision.set(vmId, current?.revision ?? 0);
    if (current?.operation !== "PUT") return "older";
    const have = VmView.safeParse(current.json());
    if (!have.success || have.data.lastEventSeq < seq) return "older";
    if (have.data.lastEventSeq > seq) {
      this.refused++;
      this.log.info(
        { vmId, have: have.data.lastEventSeq, mine: seq },
        "view write refused: the record is newer (written by a later worker of this host)",
      );
    }
    return "current";
  }
}
