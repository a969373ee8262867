import type { MsgHdrs } from "@nats-io/transport-node";

/** What happens to a command's message once the handler is done with it. */
export type Settlement =
  /** It has its outcome (or is a duplicate): done. */
  | { readonly kind: "ack" }
  /** Bad input or given up: never delivered again. */
  | { readonly kind: "term" }
  /** Back to the stream, delivered again after the delay. */
  | { readonly kind: "nak"; readonly delayMs: number }
  /** Given up by this process (a drain): straight back, for whoever runs the host next. */
  | { readonly kind: "abandon" };

export const ACK: Settlement = { kind: "ack" };
export const TERM: Settlement = { kind: "term" };
export const ABANDON: Settlement = { kind: "abandon" };
export const nak = (delayMs: number): Settlement => ({ kind: "nak", delayMs });

/** A delivered command as the handler reads it: a JetStream message, or an earlier one read back. */
export interface CommandMessage {
  readonly subject: string;
  readonly data: Uint8Array;
  readonly seq: number;
  readonly headers?: MsgHdrs | undefined;
  readonly info: { readonly redelivered: boolean; readonly deliveryCount: number };
}
