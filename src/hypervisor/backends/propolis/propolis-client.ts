/**
 * A typed client for one propolis-server (one VM) speaking API 5.0.0. Uses node:http for every
 * call because the state monitor is a GET with a JSON body (fetch refuses it) and must not be
 * cut by an implicit timeout. Every request carries the `api-version` header.
 */
import http from "node:http";
import type { z } from "zod";
import { HypervisorError } from "../../errors.js";
import {
  ErrorBody,
  InstanceEnsureResponse,
  InstanceGetResponse,
  InstanceStateMonitorResponse,
  PROPOLIS_API_VERSION,
  SerialHistoryResponse,
  type InstanceEnsureRequest,
  type InstanceStateRequested,
} from "./propolis-api.js";
import { retry } from "../../../lib/retry.js";

export interface PropolisClientOptions {
  /** The pinned API version sent in `api-version` (≤ the server's latest). */
  apiVersion?: string;
  /** Timeout of ordinary calls (not the long poll); default 15 s. */
  timeoutMs?: number;
}

export interface ClientCallOptions {
  signal?: AbortSignal;
}

interface RawResponse {
  status: number;
  body: unknown;
}

const UNREACHABLE = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ETIMEDOUT",
  "EPIPE",
  "ENOTFOUND",
  "EAI_AGAIN",
]);

/** Splits "host:port" / "[v6]:port" into parts; throws on anything else. */
export function parseAddr(addr: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(addr);
  const port = m ? Number(m[3]) : NaN;
  if (!m || !(port > 0 && port < 65536)) {
    throw new HypervisorError("hypervisor::invalid-path", `bad propolis-server address ${addr}`);
  }
  return { host: m[1] ?? m[2] ?? "", port };
}

export class PropolisClient {
  readonly addr: string;
  readonly apiVersion: string;
  readonly #host: string;
  readonly #port: number;
  readonly #timeoutMs: number;

  constructor(addr: string, opts: PropolisClientOptions = {}) {
    const { host, port } = parseAddr(addr);
    this.addr = addr;
    this.#host = host;
    this.#port = port;
    this.apiVersion = opts.apiVersion ?? PROPOLIS_API_VERSION;
    this.#timeoutMs = opts.timeoutMs ?? 15_000;
  }

  /** PUT /instance: creates (not starts) the VM. 409 means one exists already. */
  async ensure(body: InstanceEnsureRequest, opts: ClientCallOptions = {}) {
    const r = await this.#call("PUT", "/instance", body, opts, 201);
    return this.#parse(InstanceEnsureResponse, r, "ensure");
  }

  /** PUT /instance/state: 204 means queued or ignored, never done. */
  async requestState(requested: InstanceStateRequested, opts: ClientCallOptions = {}) {
    await this.#call("PUT", "/instance/state", requested, opts, 204);
  }

  async get(opts: ClientCallOptions = {}) {
    const r = await this.#idempotent(() => this.#call("GET", "/instance", undefined, opts, 200));
    return this.#parse(InstanceGetResponse, r, "instance get").instance;
  }

  /**
   * The long poll: answers once the server's generation is ≥ gen, with the latest state.
   * No timeout of its own; only the signal ends it.
   */
  async monitor(gen: number, opts: ClientCallOptions = {}) {
    const r = await this.#call("GET", "/instance/state-monitor", { gen }, opts, 200, 0);
    return this.#parse(InstanceStateMonitorResponse, r, "state monitor");
  }

  /** Buffered serial output; give exactly one of fromStart / mostRecent. */
  async serialHistory(
    q: { fromStart: number; maxBytes?: number } | { mostRecent: number; maxBytes?: number },
    opts: ClientCallOptions = {},
  ): Promise<{ data: Buffer; lastByteOffset: number }> {
    const p = new URLSearchParams();
    if ("fromStart" in q) p.set("from_start", String(q.fromStart));
    else p.set("most_recent", String(q.mostRecent));
    if (q.maxBytes !== undefined) p.set("max_bytes", String(q.maxBytes));
    const r = await this.#call(
      "GET",
      `/instance/serial/history?${p.toString()}`,
      undefined,
      opts,
      200,
    );
    const h = this.#parse(SerialHistoryResponse, r, "serial history");
    return { data: Buffer.from(h.data), lastByteOffset: h.last_byte_offset };
  }

  #parse<T extends z.ZodType>(schema: T, r: RawResponse, what: string): z.infer<T> {
    const p = schema.safeParse(r.body);
    if (!p.success) {
      throw new HypervisorError(
        "propolis::bad-response",
        `propolis-server at ${this.addr} answered ${what} with an unexpected body`,
        { details: { issues: p.error.issues.slice(0, 5) } },
      );
    }
    return p.data;
  }

  #call(
    method: string,
    path: string,
    body: unknown,
    opts: ClientCallOptions,
    okStatus: number,
    timeoutMs = this.#timeoutMs,
  ): Promise<RawResponse> {
    const what = `${method} ${path}`;
    if (opts.signal?.aborted) {
      return Promise.reject(new HypervisorError("hypervisor::aborted", `${what} was cancelled`));
    }
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const headers: Record<string, string> = {
      "api-version": this.apiVersion,
      accept: "application/json",
    };
    if (payload) {
      headers["content-type"] = "application/json";
      headers["content-length"] = String(payload.length);
    }
    return new Promise<RawResponse>((resolve, reject) => {
      let settled = false;
      const finish = (err: Error | undefined, res?: RawResponse) => {
        if (settled) return;
        settled = true;
        opts.signal?.removeEventListener("abort", onAbort);
        if (err) reject(err);
        else if (res) resolve(res);
      };
      const req = http.request({
        host: this.#host,
        port: this.#port,
        method,
        path,
        headers,
        agent: false,
      });
      const onAbort = () => {
        finish(new HypervisorError("hypervisor::aborted", `${what} was cancelled`));
        req.destroy();
      };
      opts.signal?.addEventListener("abort", onAbort, { once: true });
      if (timeoutMs > 0) {
        req.setTimeout(timeoutMs, () => {
          finish(
            new HypervisorError(
              "propolis::unreachable",
              `${what} on ${this.addr} got no answer in ${timeoutMs} ms`,
            ),
          );
          req.destroy();
        });
      }
      req.on("error", (e: NodeJS.ErrnoException) => finish(this.#transportError(what, e)));
      req.on("response", (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("error", (e: NodeJS.ErrnoException) => finish(this.#transportError(what, e)));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          let parsed: unknown = undefined;
          if (text.length > 0) {
            try {
              parsed = JSON.parse(text);
            } catch {
              parsed = text;
            }
          }
          const status = res.statusCode ?? 0;
          if (status === okStatus) finish(undefined, { status, body: parsed });
          else finish(this.#statusError(what, status, parsed));
        });
      });
      req.end(payload);
    });
  }

  /**
   * A read that the connection dropped mid-way (a server restarting, a loaded host) is simply
   * asked again, twice at most; refusals and HTTP errors are answers and are not retried.
   */
  #idempotent<T>(call: () => Promise<T>): Promise<T> {
    return retry(call, {
      attempts: 3,
      baseMs: 50,
      capMs: 100,
      retryIf: (e) => {
        const errno = (e as HypervisorError).details?.errno;
        return errno === "ECONNRESET" || errno === "EPIPE";
      },
    });
  }

  #transportError(what: string, e: NodeJS.ErrnoException): HypervisorError {
    const known = e.code !== undefined && UNREACHABLE.has(e.code);
    return new HypervisorError(
      "propolis::unreachable",
      `${what} on propolis-server ${this.addr} failed: ${e.code ?? e.message}`,
      { cause: e, details: { addr: this.addr, errno: e.code, known } },
    );
  }

  /** Maps dropshot's {request_id, error_code?, message} by status (and error_code). */
  #statusError(what: string, status: number, body: unknown): HypervisorError {
    const eb = ErrorBody.safeParse(body);
    const e = eb.success ? eb.data : undefined;
    const details = {
      addr: this.addr,
      status,
      ...(e ? { requestId: e.request_id, message: e.message } : {}),
      ...(e?.error_code ? { errorCode: e.error_code } : {}),
    };
    const server = e ? `${e.error_code ?? e.message} (request ${e.request_id})` : `HTTP ${status}`;
    const msg = `${what} on propolis-server ${this.addr}: ${status} ${server}`;
    switch (status) {
      case 400:
        if (e && /api-version|api version|version header/i.test(e.message)) {
          return new HypervisorError("propolis::api-version", msg, {
            details,
            hint: `The server rejects api-version ${this.apiVersion}; pin a version it supports.`,
          });
        }
        return new HypervisorError("propolis::bad-request", msg, { details });
      case 403:
      case 409:
        return new HypervisorError("propolis::invalid-state", msg, { details });
      case 410:
        return new HypervisorError("propolis::gone", msg, { details });
      case 424:
        return new HypervisorError("propolis::no-instance", msg, { details });
      case 503:
        return new HypervisorError("propolis::busy", msg, { details });
      default:
        return new HypervisorError(
          status >= 500 ? "propolis::server-error" : "propolis::bad-request",
          msg,
          // Exception to the table: a 500 is opaque (init failure, bug), not worth retrying
          // blindly; gateway errors (502-504) are.
          { details, retryable: status > 500 },
        );
    }
  }
}
