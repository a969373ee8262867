import { JetStreamApiError, type JetStreamManager } from "@nats-io/jetstream";
import type { Names } from "../contracts/subjects.js";

/** JSStreamMsgDeleteFailedF: the server says why in the description. */
const DELETE_FAILED = 10057;
/** JSSequenceNotFoundErrF: the sequence is before the stream's first (gone already). */
const SEQUENCE_NOT_FOUND = 10043;

/**
 * Removes a compacted VM's events from VMQ_EVENTS. With the sequences known, it deletes
 * exactly those: a filtered purge makes nats-server 2.9 walk the stream under its lock, about
 * 6 ms each whatever the stream's size, and that bounded how fast a host could compact (a few
 * hundred VMs a second); deleting 8 sequences costs it about a sixth of that. A stream made
 * with `deny_delete` (vmq made it so before 0.9, and the setting cannot be undone) refuses
 * deletes: then, and without sequences, it purges by subject.
 */
export class VmPurge {
  /** Unknown until the first delete; false once the stream refused one. */
  #deletes: boolean | undefined;
  /** Told once when the stream refuses deletes (the worker logs it). */
  onDeletesDenied: (() => void) | undefined;

  constructor(
    private readonly jsm: () => Promise<JetStreamManager>,
    private readonly names: Names,
  ) {}

  async purge(
    host: string,
    vmId: string,
    throughSeq: number,
    seqs?: readonly number[],
  ): Promise<number> {
    const jsm = await this.jsm();
    if (seqs && this.#deletes !== false) {
      const gone = await this.#delete(
        jsm,
        seqs.filter((seq) => seq <= throughSeq),
      );
      if (gone !== undefined) return gone;
    }
    const r = await jsm.streams.purge(this.names.eventsStream, {
      filter: this.names.evt(host, vmId),
      seq: throughSeq + 1, // up to, not including
    });
    return r.purged;
  }

  /** How many went; undefined when the stream refuses deletes. */
  async #delete(jsm: JetStreamManager, seqs: readonly number[]): Promise<number | undefined> {
    const stream = this.names.eventsStream;
    let denied = false;
    const one = (seq: number) =>
      jsm.streams.deleteMessage(stream, seq, false).then(
        () => 1,
        (e: unknown) => {
          if (!(e instanceof JetStreamApiError)) throw e;
          if (e.code === SEQUENCE_NOT_FOUND) return 0;
          if (e.code !== DELETE_FAILED) throw e;
          // The same code says "no message found" (gone in an interrupted compaction: fine)
          // and "message delete not permitted" (deny_delete).
          if (/not permitted/i.test(e.message)) denied = true;
          return 0;
        },
      );
    const gone = (await Promise.all(seqs.map(one))).reduce((a, b) => a + b, 0);
    if (!denied) {
      this.#deletes = true;
      return gone;
    }
    if (this.#deletes !== false) this.onDeletesDenied?.();
    this.#deletes = false;
    return undefined;
  }
}
