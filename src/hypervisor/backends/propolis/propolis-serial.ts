/**
 * The serial console of one propolis-server: a websocket at /instance/serial that needs the
 * api-version header on the upgrade. Binary frames are guest bytes; text frames are JSON
 * control messages (only `Migrating` exists).
 */
import WebSocket from "ws";
import { HypervisorError } from "../../errors.js";
import { PROPOLIS_API_VERSION } from "./propolis-api.js";
import { parseAddr } from "./propolis-client.js";

export interface SerialQuery {
  fromStart?: number;
  mostRecent?: number;
}

export function serialUrl(addr: string, q: SerialQuery = {}): string {
  const { host, port } = parseAddr(addr);
  const h = host.includes(":") ? `[${host}]` : host;
  const p = new URLSearchParams();
  if (q.fromStart !== undefined) p.set("from_start", String(q.fromStart));
  if (q.mostRecent !== undefined) p.set("most_recent", String(q.mostRecent));
  const qs = p.toString();
  return `ws://${h}:${port}/instance/serial${qs ? `?${qs}` : ""}`;
}

export interface SerialMigrating {
  destination: string;
  fromStart: number;
}

/** Parses a text control frame; undefined when it is not one we know. */
export function parseControlFrame(text: string): SerialMigrating | undefined {
  try {
    const v = JSON.parse(text) as { Migrating?: { destination?: unknown; from_start?: unknown } };
    const m = v.Migrating;
    if (m && typeof m.destination === "string" && typeof m.from_start === "number") {
      return { destination: m.destination, fromStart: m.from_start };
    }
  } catch {
    // not JSON: ignored like any unknown control frame
  }
  return undefined;
}

export interface SerialConnectOptions extends SerialQuery {
  apiVersion?: string;
  signal?: AbortSignal;
  /** Guest output; attached before the upgrade so buffered history is not missed. */
  onData?: (bytes: Buffer) => void;
  /** A migration notice: reconnect to the destination from that offset. */
  onMigrating?: (m: SerialMigrating) => void;
}

/** Opens the console; resolves once the upgrade succeeded. */
export function connectSerial(addr: string, q: SerialConnectOptions = {}): Promise<WebSocket> {
  if (q.fromStart !== undefined && q.mostRecent !== undefined) {
    return Promise.reject(
      new HypervisorError("propolis::bad-request", "give from_start or most_recent, not both"),
    );
  }
  const ws = new WebSocket(serialUrl(addr, q), {
    headers: { "api-version": q.apiVersion ?? PROPOLIS_API_VERSION },
    handshakeTimeout: 15_000,
  });
  ws.on("message", (data: WebSocket.RawData, isBinary: boolean) => {
    const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as Buffer);
    if (isBinary) q.onData?.(buf);
    else {
      const m = parseControlFrame(buf.toString("utf8"));
      if (m) q.onMigrating?.(m);
    }
  });
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      ws.terminate();
      reject(new HypervisorError("hypervisor::aborted", "serial connect cancelled"));
    };
    q.signal?.addEventListener("abort", onAbort, { once: true });
    ws.once("open", () => {
      q.signal?.removeEventListener("abort", onAbort);
      resolve(ws);
    });
    ws.once("unexpected-response", (_req, res) => {
      q.signal?.removeEventListener("abort", onAbort);
      const code = res.statusCode === 400 ? "propolis::api-version" : "propolis::bad-request";
      ws.terminate();
      reject(new HypervisorError(code, `serial upgrade refused: HTTP ${res.statusCode ?? 0}`));
    });
    ws.once("error", (e) => {
      q.signal?.removeEventListener("abort", onAbort);
      reject(
        new HypervisorError("propolis::unreachable", `serial console at ${addr}: ${e.message}`, {
          cause: e,
        }),
      );
    });
  });
}
