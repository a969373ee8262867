import { createServer, type Server } from "node:http";
import type { Registry } from "prom-client";
import { VmqError } from "../../lib/errors.js";

export interface Health {
  /** alive: the process works (false only when the worker failed). */
  alive(): boolean;
  /** Why the worker is not ready (empty when it is): replayed, reconciled, connected, running. */
  notReady(): string[];
}

/** Parses `:9464`, `9464` or `127.0.0.1:9464`. */
export function parseListen(s: string): { host: string; port: number } {
  const m = /^(?:(.*):)?(\d{1,5})$/.exec(s.trim());
  const port = Number(m?.[2]);
  if (!m || port > 65535)
    throw new VmqError("config::invalid", `--http ${s} is not [host]:port`, {
      hint: "Use :9464 or 127.0.0.1:9464.",
    });
  return { host: m[1] || "0.0.0.0", port };
}

/** /metrics (Prometheus), /healthz (alive), /readyz (replayed, reconciled, connected). */
export async function startHttp(
  listen: string,
  registry: Registry,
  health: Health,
): Promise<Server> {
  const { host, port } = parseListen(listen);
  const server = createServer((req, res) => {
    const send = (status: number, body: string, type = "application/json") => {
      res.writeHead(status, { "content-type": type });
      res.end(body);
    };
    const path = (req.url ?? "/").split("?")[0];
    if (path === "/metrics") {
      registry.metrics().then(
        (text) => send(200, text, registry.contentType),
        (e: unknown) => send(500, JSON.stringify({ error: String(e) })),
      );
    } else if (path === "/healthz") {
      const ok = health.alive();
      send(ok ? 200 : 503, JSON.stringify({ status: ok ? "alive" : "failed" }));
    } else if (path === "/readyz") {
      const why = health.notReady();
      send(
        why.length ? 503 : 200,
        JSON.stringify(why.length ? { status: "not ready", reasons: why } : { status: "ready" }),
      );
    } else
      send(404, JSON.stringify({ error: "not found", paths: ["/metrics", "/healthz", "/readyz"] }));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", (e: NodeJS.ErrnoException) =>
      reject(
        new VmqError(
          "worker::http-unavailable",
          `cannot serve --http on ${host}:${port}: ${e.code === "EADDRINUSE" ? "the port is taken" : (e.code ?? e.message)}`,
          { cause: e },
        ),
      ),
    );
    server.listen(port, host, resolve);
  });
  return server;
}

/** /metrics, /healthz and /readyz on `listen`, for as long as the worker runs. */
export class HttpService {
  readonly name = "HTTP";
  #server: Server | undefined;
  /** The port it listens on (when started). */
  port: number | undefined;

  constructor(
    private readonly listen: string,
    private readonly registry: Registry,
    private readonly health: Health,
    private readonly log: { info(o: object, m: string): void },
  ) {}

  async start(): Promise<void> {
    this.#server = await startHttp(this.listen, this.registry, this.health);
    const a = this.#server.address();
    this.port = typeof a === "object" && a ? a.port : undefined;
    this.log.info({ listen: this.listen, port: this.port }, "serving /metrics, /healthz, /readyz");
  }

  stop(): Promise<void> {
    this.#server?.close();
    return Promise.resolve();
  }
}
