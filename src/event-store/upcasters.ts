import { VmEvent } from "../contracts/index.js";
import { VmqError } from "../lib/errors.js";

/**
 * Old event versions -> the current shape, applied on every read. Version 1 is current, so
 * the table is empty; a v2 adds `"vm.started@1": (e) => ({...e, version: 2, ...})` here and
 * keeps the v1 fixtures in test/fixtures/event-streams replaying.
 */
type Upcaster = (e: Record<string, unknown>) => Record<string, unknown>;
const UPCASTERS: Record<string, Upcaster> = {};

export function upcast(raw: unknown): VmEvent {
  let e = raw as Record<string, unknown>;
  for (let guard = 0; guard < 16; guard++) {
    const up = UPCASTERS[`${String(e.type)}@${String(e.version)}`];
    if (!up) break;
    e = up(e);
  }
  const parsed = VmEvent.safeParse(e);
  if (!parsed.success) {
    throw new VmqError(
      "event-store::unreadable-event",
      `event ${String(e.eventId)} (${String(e.type)} v${String(e.version)}) cannot be read: ${parsed.error.issues[0]?.message ?? "invalid"}`,
      { hint: "A newer vmq wrote it, or an upcaster is missing." },
    );
  }
  return parsed.data;
}
