/**
 * A QMP client: line-delimited JSON on QEMU's monitor socket. It reads the greeting, sends
 * qmp_capabilities, runs commands with ids and timeouts, hands asynchronous events to
 * listeners, and, when the socket drops while `shouldReconnect()` says the VM still lives,
 * reconnects with backoff. QEMU's socket serves one client at a time.
 */
import { createConnection, type Socket } from "node:net";
import { retry } from "../../../lib/retry.js";
import { HypervisorError } from "../../errors.js";

export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
  timestamp?: { seconds: number; microseconds: number };
}

export interface QmpClientOptions {
  /** Greeting + capabilities must complete within this (default 5000 ms). */
  connectTimeoutMs?: number;
  /** Default per-command timeout (default 10000 ms). */
  commandTimeoutMs?: number;
  /** Asked after a drop: reconnect only while this says the VM lives. Default: never. */
  shouldReconnect?: () => Promise<boolean> | boolean;
  /** Reconnect attempts before giving up (default 8). */
  maxReconnectAttempts?: number;
  /** Backoff base for reconnects (default 100 ms). */
  reconnectBaseMs?: number;
}

export interface CommandOptions {
  timeoutMs?: number;
  signal?: AbortSignal;
}

type Listener<T> = (value: T) => void;

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
  command: string;
}

export class QmpClient {
  readonly path: string;
  #socket: Socket | undefined;
  #nextId = 1;
  readonly #pending = new Map<string, Pending>();
  readonly #events = new Set<Listener<QmpEvent>>();
  readonly #disconnects = new Set<Listener<void>>();
  readonly #reconnects = new Set<Listener<void>>();
  readonly #closes = new Set<Listener<void>>();
  #closed = false;
  readonly #opts: Required<Omit<QmpClientOptions, "shouldReconnect">> & {
    shouldReconnect: QmpClientOptions["shouldReconnect"] | undefined;
  };

  private constructor(path: string, opts: QmpClientOptions) {
    this.path = path;
    this.#opts = {
      connectTimeoutMs: opts.connectTimeoutMs ?? 5000,
      commandTimeoutMs: opts.commandTimeoutMs ?? 10_000,
      maxReconnectAttempts: opts.maxReconnectAttempts ?? 8,
      reconnectBaseMs: opts.reconnectBaseMs ?? 100,
      shouldReconnect: opts.shouldReconnect,
    };
  }

  /** Connects and negotiates capabilities; throws qemu::qmp-connect-failed. */
  static async connect(path: string, opts: QmpClientOptions = {}): Promise<QmpClient> {
    const c = new QmpClient(path, opts);
    c.#socket = await c.#open();
    return c;
  }

  get connected(): boolean {
    return this.#socket !== undefined && !this.#closed;
  }

  /** Every asynchronous event (SHUTDOWN, POWERDOWN, STOP, RESUME, RESET, GUEST_PANICKED...). */
  onEvent(l: Listener<QmpEvent>): () => void {
    this.#events.add(l);
    return () => this.#events.delete(l);
  }
  /** The socket dropped (a reconnect may follow). */
  onDisconnect(l: Listener<void>): () => void {
    this.#disconnects.add(l);
    return () => this.#disconnects.delete(l);
  }
  onReconnect(l: Listener<void>): () => void {
    this.#reconnects.add(l);
    return () => this.#reconnects.delete(l);
  }
  /** The client is finished: closed by us, or the VM is gone / reconnecting gave up. */
  onClose(l: Listener<void>): () => void {
    this.#closes.add(l);
    return () => this.#closes.delete(l);
  }

  /** Runs a command; QMP error replies become qemu::qmp-command-failed (with class/desc). */
  async execute<T = unknown>(
    command: string,
    args?: Record<string, unknown>,
    opts: CommandOptions = {},
  ): Promise<T> {
    opts.signal?.throwIfAborted();
    const sock = this.#socket;
    if (!sock || this.#closed) {
      throw new HypervisorError("qemu::qmp-connect-failed", `QMP ${this.path} is not connected`, {
        hint: "QEMU may have exited; check the VM's state and console.log in its work dir.",
      });
    }
    return (await this.#send(sock, command, args, opts)) as T;
  }

  /** Closes for good (no reconnect); pending commands fail. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#failPending("the QMP client was closed");
    this.#socket?.destroy();
    this.#socket = undefined;
    for (const l of this.#closes) l();
  }

  // ---- internals -------------------------------------------------------------------------

  #send(
    sock: Socket,
    command: string,
    args: Record<string, unknown> | undefined,
    opts: CommandOptions,
  ): Promise<unknown> {
    const id = `vmq-${this.#nextId++}`;
    const timeoutMs = opts.timeoutMs ?? this.#opts.commandTimeoutMs;
    return new Promise((resolve, reject) => {
      const onAbort = (): void => {
        this.#settle(id);
        reject(new HypervisorError("hypervisor::aborted", `QMP ${command} was cancelled`, {}));
      };
      const timer = setTimeout(() => {
        this.#settle(id);
        opts.signal?.removeEventListener("abort", onAbort);
        reject(
          new HypervisorError(
            "hypervisor::timeout",
            `QMP ${command} got no answer in ${timeoutMs} ms`,
            {},
          ),
        );
      }, timeoutMs);
      opts.signal?.addEventListener("abort", onAbort, { once: true });
      this.#pending.set(id, {
        command,
        timer,
        resolve: (v) => {
          opts.signal?.removeEventListener("abort", onAbort);
          resolve(v);
        },
        reject: (e) => {
          opts.signal?.removeEventListener("abort", onAbort);
          reject(e);
        },
      });
      sock.write(
        `${JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}), id })}\n`,
      );
    });
  }

  #settle(id: string): Pending | undefined {
    const p = this.#pending.get(id);
    if (p) {
      clearTimeout(p.timer);
      this.#pending.delete(id);
    }
    return p;
  }

  #failPending(why: string): void {
    for (const [id, p] of [...this.#pending]) {
      this.#settle(id);
      p.reject(
        new HypervisorError("qemu::qmp-connect-failed", `QMP ${p.command}: ${why}`, {
          hint: "QEMU may have exited; check the VM's state.",
        }),
      );
    }
  }

  /** Connects, reads the greeting, negotiates capabilities, then routes messages. */
  #open(): Promise<Socket> {
    return new Promise<Socket>((resolve, reject) => {
      const sock = createConnection({ path: this.path });
      let buf = "";
      let phase: "greeting" | "caps" | "ready" = "greeting";
      const fail = (why: string, cause?: unknown): void => {
        clearTimeout(timer);
        sock.destroy();
        reject(
          new HypervisorError("qemu::qmp-connect-failed", `QMP ${this.path}: ${why}`, {
            hint: "QEMU may have died before its socket was ready; look at console.log in the work dir.",
            cause,
          }),
        );
      };
      const timer = setTimeout(
        () => fail(`no QMP greeting within ${this.#opts.connectTimeoutMs} ms`),
        this.#opts.connectTimeoutMs,
      );
      sock.setEncoding("utf8");
      sock.on("error", (e) => {
        if (phase !== "ready") fail(e.message, e);
      });
      sock.on("close", () => {
        if (phase !== "ready") fail("the socket closed during the handshake");
        else this.#dropped(sock);
      });
      sock.on("data", (chunk: string) => {
        buf += chunk;
        let nl: number;
        while ((nl = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, nl).trim();
          buf = buf.slice(nl + 1);
          if (!line) continue;
          let msg: Record<string, unknown>;
          try {
            msg = JSON.parse(line) as Record<string, unknown>;
          } catch {
            continue; // not QMP: ignore rather than die
          }
          if (phase === "greeting") {
            if (!("QMP" in msg)) return fail("the peer did not greet with QMP");
            phase = "caps";
            sock.write(`${JSON.stringify({ execute: "qmp_capabilities", id: "caps" })}\n`);
          } else if (phase === "caps") {
            if ("event" in msg) continue;
            if ("error" in msg)
              return fail(`qmp_capabilities refused: ${JSON.stringify(msg.error)}`);
            phase = "ready";
            clearTimeout(timer);
            resolve(sock);
          } else {
            this.#route(msg);
          }
        }
      });
    });
  }

  #route(msg: Record<string, unknown>): void {
    if (typeof msg.event === "string") {
      const ev = msg as unknown as QmpEvent;
      for (const l of this.#events) {
        try {
          l(ev);
        } catch {
          /* a listener's bug must not break the stream */
        }
      }
      return;
    }
    const id = typeof msg.id === "string" ? msg.id : undefined;
    const p = id === undefined ? undefined : this.#settle(id);
    if (!p) return;
    if ("error" in msg) {
      const err = (msg.error ?? {}) as { class?: string; desc?: string };
      p.reject(
        new HypervisorError(
          "qemu::qmp-command-failed",
          `QMP ${p.command} failed: ${err.desc ?? "unknown error"}`,
          {
            details: { class: err.class, command: p.command },
          },
        ),
      );
    } else {
      p.resolve(msg.return);
    }
  }

  #dropped(sock: Socket): void {
    if (this.#socket !== sock || this.#closed) return;
    this.#socket = undefined;
    this.#failPending("the socket closed");
    for (const l of this.#disconnects) l();
    void this.#reconnect();
  }

  /** Reconnects while the VM lives (and this client is not closed); otherwise closes. */
  async #reconnect(): Promise<void> {
    const gone = new Error("the VM is gone or the client closed");
    const live = async (): Promise<boolean> =>
      !this.#closed &&
      ((await Promise.resolve(this.#opts.shouldReconnect?.()).catch(() => false)) ?? false);
    let sock: Socket;
    try {
      if (!(await live())) throw gone;
      sock = await retry(
        async () => {
          if (!(await live())) throw gone;
          return this.#open();
        },
        {
          attempts: this.#opts.maxReconnectAttempts,
          baseMs: this.#opts.reconnectBaseMs,
          capMs: 2000,
          waitFirst: true,
          retryIf: (e) => e !== gone,
        },
      );
    } catch {
      if (!this.#closed) this.close();
      return;
    }
    if (this.#closed) {
      sock.destroy();
      return;
    }
    this.#socket = sock;
    for (const l of this.#reconnects) l();
  }
}
