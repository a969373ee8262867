import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { AddressInfo } from "node:net";
import type { VmqClient } from "../client/index.js";
import { hintFor } from "../contracts/error-codes.js";
import { isVmqError, VmqError } from "../lib/errors.js";
import type { Logger } from "../observability/logger.js";
import { handleApi } from "./api.js";
import { checkAccess, checkStateChange, makeGuard, type Guard } from "./auth.js";
import { attachConsoleBridge } from "./console-bridge.js";
import { Feed } from "./feed.js";

/** The page's files: src/ui/static, copied beside this module into dist/ui/static by the build. */
const STATIC_DIR = join(dirname(fileURLToPath(import.meta.url)), "static");
const XTERM_JS = createRequire(import.meta.url).resolve("@xterm/xterm");
const VENDOR: Record<string, string> = {
  "xterm.js": XTERM_JS,
  "xterm.css": join(dirname(XTERM_JS), "..", "css", "xterm.css"),
};
const TYPES: Record<string, string> = {
  html: "text/html; charset=utf-8",
  js: "text/javascript; charset=utf-8",
  css: "text/css; charset=utf-8",
  svg: "image/svg+xml",
};
const MAX_BODY = 64 * 1024;
/** The page loads nothing from elsewhere; inline scripts and frames are refused outright. */
const CSP =
  "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

export interface UiOptions {
  client: VmqClient;
  log: Logger;
  host: string;
  port: number;
  loopback: boolean;
  token?: string | undefined;
}

export interface UiServer {
  url: string;
  close(): Promise<void>;
}

/** `vmq ui`'s server: the page, its JSON API, the live feed (SSE) and the console websocket. */
export async function startUi(o: UiOptions): Promise<UiServer> {
  const guard = makeGuard({ loopback: o.loopback, token: o.token });
  const feed = new Feed(o.client, o.log);
  await feed.start();
  const server = createServer((req, res) => {
    route(o, guard, feed, req, res).catch((e: unknown) => sendError(res, e, o.log));
  });
  const bridge = attachConsoleBridge(server, o.client, guard, o.log);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(o.port, o.host, () => resolve());
  });
  const a = server.address() as AddressInfo;
  const shown = a.family === "IPv6" ? `[${a.address}]` : a.address;
  return {
    url: `http://${shown}:${a.port}/`,
    close: async () => {
      bridge.close();
      await feed.stop();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

async function route(
  o: UiOptions,
  guard: Guard,
  feed: Feed,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const url = new URL(req.url ?? "/", "http://ui.invalid");
  const path = url.pathname;
  res.setHeader("Content-Security-Policy", CSP);
  res.setHeader("X-Content-Type-Options", "nosniff");
  res.setHeader("Referrer-Policy", "no-referrer");
  // The page's code holds no data: served to anyone who reaches the port, like a CDN would.
  const file = /^\/static\/([a-z0-9-]+\.(?:js|css|svg))$/.exec(path)?.[1];
  if (file && req.method === "GET") return sendFile(res, join(STATIC_DIR, file));
  const vendor = /^\/vendor\/(xterm\.(?:js|css))$/.exec(path)?.[1];
  if (vendor && req.method === "GET") return sendFile(res, VENDOR[vendor] ?? "");
  checkAccess(guard, req, url);
  if (path === "/" && req.method === "GET") return sendFile(res, join(STATIC_DIR, "index.html"));
  if (path === "/api/session" && req.method === "GET")
    return sendJson(res, 200, {
      csrf: guard.csrf,
      prefix: o.client.names.prefix,
      tokenRequired: guard.token !== undefined,
      hostTtlMs: feed.hostTtlMs,
    });
  if (path === "/api/stream" && req.method === "GET") return stream(feed, req, res);
  if (path.startsWith("/api/")) {
    if (req.method !== "GET") checkStateChange(guard, req);
    const body = req.method === "POST" ? await readBody(req) : undefined;
    const parts = path.slice(5).split("/").map(decodeURIComponent);
    const out = await handleApi(o.client, { method: req.method ?? "GET", parts, body });
    return sendJson(res, 200, out);
  }
  throw new VmqError("ui::not-found", `nothing at ${path}`);
}

/** Server-sent events: the whole state once, then batched changes; a comment keeps it open. */
function stream(feed: Feed, req: IncomingMessage, res: ServerResponse): void {
  res.writeHead(200, {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-store",
    Connection: "keep-alive",
  });
  const send = (name: string, data: unknown) =>
    res.write(`event: ${name}\ndata: ${JSON.stringify(data)}\n\n`);
  send("snapshot", feed.snapshot());
  const off = feed.subscribe((d) => send("delta", d));
  const tick = setInterval(() => {
    send("stats", { stats: feed.stats(), now: Date.now() });
  }, 2_000);
  req.on("close", () => {
    off();
    clearInterval(tick);
  });
}

async function readBody(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > MAX_BODY) throw new VmqError("ui::bad-request", "the request body is too large");
    chunks.push(c as Buffer);
  }
  if (size === 0) return {};
  try {
    return JSON.parse(Buffer.concat(chunks).toString("utf8"));
  } catch {
    throw new VmqError("ui::bad-request", "the request body is not JSON");
  }
}

async function sendFile(res: ServerResponse, path: string): Promise<void> {
  const data = await readFile(path).catch(() => null);
  if (!data) throw new VmqError("ui::not-found", "no such file");
  const ext = path.slice(path.lastIndexOf(".") + 1);
  res.writeHead(200, {
    "Content-Type": TYPES[ext] ?? "application/octet-stream",
    "Cache-Control": "no-cache",
  });
  res.end(data);
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "Content-Type": "application/json", "Cache-Control": "no-store" });
  res.end(JSON.stringify(body));
}

const STATUS: Record<string, number> = {
  "ui::unauthorized": 401,
  "ui::cross-site": 403,
  "ui::not-found": 404,
  "dlq::not-found": 404,
  "client::vm-unknown": 404,
  "ui::bad-request": 400,
  "command::invalid": 400,
  "client::outcome-timeout": 504,
  "client::not-accepted": 504,
};

function sendError(res: ServerResponse, e: unknown, log: Logger): void {
  const err = isVmqError(e) ? e : undefined;
  if (!err) log.warn({ err: e }, "ui: request failed");
  const code = err?.code ?? "ui::internal";
  const status = STATUS[code] ?? (err ? 409 : 500);
  if (res.headersSent) {
    res.end();
    return;
  }
  if (status === 401) res.setHeader("WWW-Authenticate", 'Bearer realm="vmq ui"');
  sendJson(res, status, {
    error: {
      code,
      message: err?.message ?? (e instanceof Error ? e.message : String(e)),
      hint: err?.hint ?? hintFor(code),
    },
  });
}
