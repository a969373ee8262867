import type { IncomingMessage, Server } from "node:http";
import type { Duplex } from "node:stream";
import { WebSocketServer, type WebSocket } from "ws";
import type { ConsoleSession, VmqClient } from "../client/index.js";
import { isValidId } from "../contracts/index.js";
import { isVmqError } from "../lib/errors.js";
import type { Logger } from "../observability/logger.js";
import { checkAccess, checkStateChange, type Guard } from "./auth.js";

/**
 * The console page's websocket (/api/console?vmId=&host=) bridged to the SDK's console
 * session over NATS: binary frames both ways. A websocket is not bound by CORS, so the
 * upgrade needs the same Origin, the CSRF token and (when set) the UI token, like a POST.
 */
export function attachConsoleBridge(
  server: Server,
  client: VmqClient,
  guard: Guard,
  log: Logger,
): { close(): void } {
  const wss = new WebSocketServer({ noServer: true, maxPayload: 64 * 1024 });
  server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const url = new URL(req.url ?? "/", "http://ui.invalid");
    const refuse = (status: number, why: string) => {
      socket.end(`HTTP/1.1 ${status} ${why}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    };
    if (url.pathname !== "/api/console") return refuse(404, "Not Found");
    try {
      checkAccess(guard, req, url);
      checkStateChange(guard, req, url);
    } catch (e) {
      const unauthorized = isVmqError(e) && e.code === "ui::unauthorized";
      return refuse(unauthorized ? 401 : 403, unauthorized ? "Unauthorized" : "Forbidden");
    }
    const vmId = url.searchParams.get("vmId") ?? "";
    const host = url.searchParams.get("host") ?? "";
    if (!isValidId(vmId) || (host !== "" && !isValidId(host))) return refuse(400, "Bad Request");
    wss.handleUpgrade(req, socket, head, (ws) => {
      void bridge(ws, client, vmId, host || undefined, log);
    });
  });
  return {
    close: () => {
      for (const ws of wss.clients) ws.terminate();
      wss.close();
    },
  };
}

async function bridge(
  ws: WebSocket,
  client: VmqClient,
  vmId: string,
  host: string | undefined,
  log: Logger,
): Promise<void> {
  let session: ConsoleSession;
  try {
    session = await client.openConsole(vmId, host ? { host } : {});
  } catch (e) {
    const msg = isVmqError(e) ? `${e.message} [${e.code}]` : String(e);
    ws.close(4000, msg.slice(0, 120)); // a close reason is at most 123 bytes
    return;
  }
  let closed = false;
  const end = () => {
    if (closed) return;
    closed = true;
    session.close();
    ws.close(1000, session.closedReason?.slice(0, 120) ?? "");
  };
  ws.on("message", (data: Buffer, isBinary: boolean) =>
    session.write(isBinary ? new Uint8Array(data) : data.toString("utf8")),
  );
  ws.on("close", end);
  ws.on("error", end);
  try {
    for await (const bytes of session.output()) {
      if (closed) break;
      ws.send(bytes);
    }
  } catch (e) {
    log.warn({ err: e, vmId }, "ui: console relay ended");
  }
  end();
}
