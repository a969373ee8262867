import { fastEvent, fieldText, upcastEvent, UPCASTERS, type VmEvent } from "../contracts/index.js";
import { VmqError } from "../lib/errors.js";

/** The stored event in its current shape (contracts' upcasters), or a coded error. */
export function upcast(raw: unknown): VmEvent {
  // The common shapes of the current version: plain checks that accept only what zod accepts
  // (contracts/fast-events.ts); everything else, and whatever they doubt, through zod.
  if (!hasUpcaster(raw)) {
    const fast = fastEvent(raw);
    if (fast) return fast;
  }
  const r = upcastEvent(raw);
  if (r.ok) return r.event;
  throw new VmqError("event-store::unreadable-event", r.message, {
    hint: "A newer vmq wrote it, or an upcaster is missing.",
  });
}

function hasUpcaster(raw: unknown): boolean {
  // No upcasters (version 1 is current): no key to build per event on a replay.
  if (noUpcasters()) return false;
  const e = raw as { type?: unknown; version?: unknown } | null;
  return (
    typeof e === "object" &&
    e !== null &&
    `${fieldText(e.type)}@${fieldText(e.version)}` in UPCASTERS
  );
}

function noUpcasters(): boolean {
  for (const _ in UPCASTERS) return false;
  return true;
}
