import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import type { IncomingMessage } from "node:http";
import { isIP } from "node:net";
import { VmqError } from "../lib/errors.js";

/**
 * Who may use the UI. Loopback listeners need no token, but still check the Host header (a
 * page from another site cannot reach 127.0.0.1 through DNS rebinding). Any other address
 * needs the token on every request: `Authorization: Bearer`, or `?token=` where a browser
 * cannot set a header (the first page load, the event stream, the console's websocket). No
 * cookie is ever set, so a cross-site request carries no credential of its own; state changes
 * also need the same Origin and the per-process CSRF token in a header, which a cross-site
 * form cannot send and a cross-site script cannot read.
 */
export interface Guard {
  readonly loopback: boolean;
  readonly token: string | undefined;
  /** Handed to the page by GET /api/session; sent back as X-Vmq-Csrf on state changes. */
  readonly csrf: string;
}

export const CSRF_HEADER = "x-vmq-csrf";

export function makeGuard(opts: { loopback: boolean; token?: string | undefined }): Guard {
  return { loopback: opts.loopback, token: opts.token, csrf: randomBytes(24).toString("hex") };
}

/** An address only this machine can reach. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "");
  if (h === "localhost") return true;
  if (isIP(h) === 4) return h.startsWith("127.");
  return h === "::1";
}

const sameSecret = (a: string, b: string): boolean =>
  // Hashes first: equal lengths for timingSafeEqual, and no length leaked.
  timingSafeEqual(createHash("sha256").update(a).digest(), createHash("sha256").update(b).digest());

const hostName = (hostHeader: string): string =>
  hostHeader.startsWith("[")
    ? hostHeader.slice(0, hostHeader.indexOf("]") + 1)
    : (hostHeader.split(":")[0] ?? "");

/** Any request: the Host header (loopback listeners) and the token (when one is set). */
export function checkAccess(g: Guard, req: IncomingMessage, url: URL): void {
  const host = req.headers.host ?? "";
  if (g.loopback && !isLoopback(hostName(host)))
    throw new VmqError("ui::cross-site", `Host ${JSON.stringify(host)} is not this loopback UI`);
  if (g.token === undefined) return;
  const auth = req.headers.authorization;
  const given = auth?.startsWith("Bearer ") ? auth.slice(7) : url.searchParams.get("token");
  if (!given || !sameSecret(given, g.token))
    throw new VmqError("ui::unauthorized", "this vmq ui needs its token");
}

/** The request comes from a page of this very server (Origin, or Referer as a fallback). */
export function checkSameOrigin(req: IncomingMessage): void {
  // Same host, either scheme: a TLS proxy in front keeps the Host but makes the page https.
  const host = req.headers.host ?? "";
  const origin = req.headers.origin ?? originOf(req.headers.referer);
  if (!host || (origin !== `http://${host}` && origin !== `https://${host}`))
    throw new VmqError(
      "ui::cross-site",
      `refused a request from ${origin ? JSON.stringify(origin) : "an unknown origin"}`,
    );
}

/** A state change: same origin and the CSRF token (header, or `csrf` for a websocket). */
export function checkStateChange(g: Guard, req: IncomingMessage, url?: URL): void {
  checkSameOrigin(req);
  const h = req.headers[CSRF_HEADER];
  const given = typeof h === "string" ? h : (url?.searchParams.get("csrf") ?? undefined);
  if (!given || !sameSecret(given, g.csrf))
    throw new VmqError("ui::cross-site", "the request lacks this page's CSRF token");
}

function originOf(referer: string | undefined): string | undefined {
  if (!referer) return undefined;
  try {
    return new URL(referer).origin;
  } catch {
    return undefined;
  }
}
