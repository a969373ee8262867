/**
 * How the fake propolis-server answers, as dropshot does: JSON bodies, the error body shape
 * (`request_id`, optional `error_code`, `message`) and the `api-version` header gate.
 */
import { randomUUID } from "node:crypto";
import type http from "node:http";
import type { Duplex } from "node:stream";

export function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  if (res.writableEnded || res.destroyed) return;
  const text = body === undefined ? "" : JSON.stringify(body);
  res.writeHead(status, text ? { "content-type": "application/json" } : {});
  res.end(text);
}

export function sendError(
  res: http.ServerResponse,
  status: number,
  message: string,
  errorCode?: string,
): void {
  sendJson(res, status, {
    request_id: randomUUID(),
    ...(errorCode === undefined ? {} : { error_code: errorCode }),
    message,
  });
}

function semverGt(a: string, b: string): boolean {
  const pa = a.split(".").map(Number);
  const pb = b.split(".").map(Number);
  for (let i = 0; i < 3; i++) {
    const x = pa[i] ?? 0;
    const y = pb[i] ?? 0;
    if (x !== y) return x > y;
  }
  return false;
}

/** The header gate: an error message, or undefined when the request may pass. */
export function apiVersionError(
  headers: http.IncomingHttpHeaders,
  latest: string,
  ignoreHeader: boolean,
): string | undefined {
  if (ignoreHeader) return undefined;
  const v = headers["api-version"];
  if (typeof v !== "string") return `missing expected header "api-version"`;
  if (!/^\d+\.\d+\.\d+$/.test(v)) return `bad value for header "api-version": ${v}`;
  if (semverGt(v, latest)) return `server does not support this API version: ${v}`;
  return undefined;
}

/** A 400 on a websocket upgrade, written by hand: no http.ServerResponse exists for it. */
export function rejectUpgrade(socket: Duplex, message: string): void {
  const text = JSON.stringify({ request_id: randomUUID(), message });
  socket.end(
    `HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(text)}\r\nconnection: close\r\n\r\n${text}`,
  );
}
