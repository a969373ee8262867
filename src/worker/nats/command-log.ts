import type { JetStreamManager, MsgRequest } from "@nats-io/jetstream";
import type { CommandLog } from "../pipeline/order-gate.js";

/** The order gate's view of the host's durable consumer and its command stream. */
export function jetStreamCommandLog(
  jsm: JetStreamManager,
  stream: string,
  durable: string,
): CommandLog {
  return {
    position: async () => {
      const info = await jsm.consumers.info(stream, durable);
      return { ackFloor: info.ack_floor.stream_seq, delivered: info.delivered.stream_seq };
    },
    next: async (subject, fromSeq) => {
      // next_by_subj works on 2.9.10 though the client's type only names seq and last_by_subj.
      const m = await jsm.streams.getMessage(stream, {
        seq: fromSeq,
        next_by_subj: subject,
      } as unknown as MsgRequest);
      return m && { seq: m.seq, subject: m.subject, data: m.data, headers: m.header };
    },
  };
}
