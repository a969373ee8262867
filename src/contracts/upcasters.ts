import { VmEvent } from "./events.js";

/**
 * Old event versions -> the current shape, applied on every read (the worker's replay and the
 * SDK's watch alike). Version 1 is current, so the table is empty; a v2 adds
 * `"vm.started@1": (e) => ({...e, version: 2, ...})` here and keeps the v1 fixtures in
 * test/fixtures/event-streams replaying.
 */
export type Upcaster = (e: Record<string, unknown>) => Record<string, unknown>;
export const UPCASTERS: Record<string, Upcaster> = {};

export type UpcastResult = { ok: true; event: VmEvent } | { ok: false; message: string };

/** The event in its current shape, or why it cannot be read (a newer vmq wrote it, say). */
export function upcastEvent(
  raw: unknown,
  upcasters: Readonly<Record<string, Upcaster>> = UPCASTERS,
): UpcastResult {
  let e = (typeof raw === "object" && raw !== null ? raw : {}) as Record<string, unknown>;
  for (let guard = 0; guard < 16; guard++) {
    const up = upcasters[`${String(e.type)}@${String(e.version)}`];
    if (!up) break;
    e = up(e);
  }
  const parsed = VmEvent.safeParse(e);
  if (parsed.success) return { ok: true, event: parsed.data };
  return {
    ok: false,
    message: `event ${String(e.eventId)} (${String(e.type)} v${String(e.version)}) cannot be read: ${parsed.error.issues[0]?.message ?? "invalid"}`,
  };
}
