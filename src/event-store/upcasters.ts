import { upcastEvent, type VmEvent } from "../contracts/index.js";
import { VmqError } from "../lib/errors.js";

/** The stored event in its current shape (contracts' upcasters), or a coded error. */
export function upcast(raw: unknown): VmEvent {
  const r = upcastEvent(raw);
  if (r.ok) return r.event;
  throw new VmqError("event-store::unreadable-event", r.message, {
    hint: "A newer vmq wrote it, or an upcaster is missing.",
  });
}
