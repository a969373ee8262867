import { VmEvent } from "./events.js";

/**
 * Old event versions -> the current shape, applied on every read (the worker's replay and the
 * SDK's watch alike). Version 1 is current, so the table is empty; a v2 adds
 * `"vm.started@1": (e) => ({...e, version: 2, ...})` here and keeps the v1 fixtures in
 * test/fixtures/event-streams replaying.
 */
export type Upcaster = (e: Record<string, unknown>) => Record<string, unknown>;
export const UPCASTERS: Record<string, Upcaster> = {};

/** A field of a stored event as text, for a key or a message: never throws, whatever was stored
 * (String() throws on an object whose toString is not callable). */
export function fieldText(v: unknown): string {
  if (typeof v === "string") return v;
  if (typeof v === "number" || typeof v === "boolean" || v === undefined || v === null)
    return String(v);
  try {
    return JSON.stringify(v) ?? typeof v;
  } catch {
    return typeof v;
  }
}

export type UpcastResult = { ok: true; event: VmEvent } | { ok: false; message: string };

/** The event in its current shape, or why it cannot be read (a newer vmq wrote it, say). */
export function upcastEvent(
  raw: unknown,
  upcasters: Readonly<Record<string, Upcaster>> = UPCASTERS,
): UpcastResult {
  let e = (typeof raw === "object" && raw !== null ? raw : {}) as Record<string, unknown>;
  for (let guard = 0; guard < 16; guard++) {
    const up = upcasters[`${fieldText(e.type)}@${fieldText(e.version)}`];
    if (!up) break;
    e = up(e);
  }
  const parsed = VmEvent.safeParse(e);
  if (parsed.success) return { ok: true, event: parsed.data };
  return {
    ok: false,
    message: `event ${fieldText(e.eventId)} (${fieldText(e.type)} v${fieldText(e.version)}) cannot be read: ${parsed.error.issues[0]?.message ?? "invalid"}`,
  };
}
