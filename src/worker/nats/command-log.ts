import type { JetStreamManager } from "@nats-io/jetstream";
import type { CommandLog } from "../pipeline/order-gate.js";
import type { CommandReader } from "./command-reader.js";

/**
 * The order gate's view of the host's durable consumer and its command stream. Earlier commands
 * are read through the host's own reader consumer, never by a stream-wide sequence read.
 */
export function jetStreamCommandLog(
  jsm: JetStreamManager,
  stream: string,
  durable: string,
  reader: CommandReader,
): CommandLog {
  return {
    position: async () => {
      const info = await jsm.consumers.info(stream, durable);
      return { ackFloor: info.ack_floor.stream_seq, delivered: info.delivered.stream_seq };
    },
    next: (subject, fromSeq) => reader.first(subject, fromSeq),
  };
}
