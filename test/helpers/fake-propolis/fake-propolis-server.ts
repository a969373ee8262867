/**
 * A faithful in-process fake of ONE propolis-server (API 5.0.0), following the real server's
 * behaviour (see shared/reference/propolis-server.md §4–§8), not Oxide's mock: generations start
 * at 1 per ensure, Run goes Creating→Starting→Running, Stop goes Stopping→Stopped→Destroyed,
 * a re-ensure after Destroyed restarts the generation, request dispositions (204 ignored, 403
 * with the verbatim reasons, 409/410/424/503), the api-version gate, a serial buffer and live
 * websocket frames, and in-process fault injection.
 *
 * "Process" model: the fake can be `alive` (serves the API) or `dead` (every API connection is
 * reset, like a port nobody listens on), so a fake zone boot/halt can start and kill "the
 * process" (propolis-fixture.ts's launcher, or the test-only control path POST /__fake/process
 * {action: "boot"|"halt"}).
 */
import http from "node:http";
import type { AddressInfo, Socket } from "node:net";
import type { Duplex } from "node:stream";
import { WebSocketServer } from "ws";
import {
  InstanceEnsureRequest,
  InstanceStateMonitorRequest,
  InstanceStateRequested,
  type InstanceProperties,
  type InstanceState,
} from "../../../src/hypervisor/backends/propolis/propolis-api.js";
import { apiVersionError, rejectUpgrade, sendError, sendJson } from "./fake-http.js";
import { FakeSerial, SERIAL_PAGE } from "./fake-serial.js";

export interface FakePropolisOptions {
  /** Delay of each automatic transition (ms); default 5. */
  stepMs?: number;
  /** Hold transitions until advance() is called. */
  manual?: boolean;
  /** The server's latest API version; requests above it get 400. Default 5.0.0. */
  latestVersion?: string;
  /** Emulate a pre-#955 server that ignores the header. */
  ignoreVersionHeader?: boolean;
  /** Start as a dead process (a zone boot brings it up). Default alive. */
  startDead?: boolean;
  /** The address to listen on (the zone's own address); default 127.0.0.1. */
  host?: string;
  port?: number;
}

export interface LoggedRequest {
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  body: unknown;
}

interface Vm {
  properties: InstanceProperties;
  spec: unknown;
  state: InstanceState;
  gen: number;
  startPending: boolean;
  stopPending: boolean;
  rebootPending: boolean;
  everRan: boolean;
  /** Cleared when a re-ensure replaces this VM's publisher. */
  waiters: Set<{ gen: number; res: http.ServerResponse }>;
}

const REASONS = {
  notActive: "Operation requires an active instance",
  starting: "Instance is currently starting",
  haltPending: "Instance is preparing to stop",
  halted: "Instance has already halted",
  failed: "Instance failed to start or halted due to a failure",
} as const;

export class FakePropolisServer {
  readonly requests: LoggedRequest[] = [];
  readonly #opts: FakePropolisOptions;
  readonly #server: http.Server;
  readonly #wss = new WebSocketServer({ noServer: true });
  readonly #sockets = new Set<Socket | Duplex>();
  readonly #serial = new FakeSerial();
  #vm: Vm | undefined;
  #alive: boolean;
  #queue: (() => void)[] = [];
  #timers = new Set<NodeJS.Timeout>();
  // fault injection
  #failStart = false;
  #failEnsure = false;
  #wedge: InstanceState | undefined;
  #busy = 0;
  /** How many times the "process" was booted (each boot is a fresh server). */
  boots = 0;

  private constructor(opts: FakePropolisOptions) {
    this.#opts = opts;
    this.#alive = !opts.startDead;
    this.#server = http.createServer((req, res) => this.#onRequest(req, res));
    this.#server.on("connection", (s) => {
      this.#sockets.add(s);
      s.on("close", () => this.#sockets.delete(s));
    });
    this.#server.on("upgrade", (req, socket, head) => this.#onUpgrade(req, socket, head));
  }

  static async start(opts: FakePropolisOptions = {}): Promise<FakePropolisServer> {
    const f = new FakePropolisServer(opts);
    await new Promise<void>((resolve, reject) => {
      f.#server.once("error", reject);
      f.#server.listen(opts.port ?? 0, opts.host ?? "127.0.0.1", () => resolve());
    });
    return f;
  }

  get port(): number {
    return (this.#server.address() as AddressInfo).port;
  }
  get host(): string {
    return (this.#server.address() as AddressInfo).address;
  }
  get addr(): string {
    return `${this.host}:${this.port}`;
  }
  get alive(): boolean {
    return this.#alive;
  }
  /** The instance state (undefined: no VM). */
  get state(): InstanceState | undefined {
    return this.#vm?.state;
  }
  get gen(): number {
    return this.#vm?.gen ?? 0;
  }
  /** Pending long polls. */
  get monitorWaiters(): number {
    return this.#vm?.waiters.size ?? 0;
  }
  /** Bodies of PUT /instance/state requests, in order. */
  /** Bytes the serial clients sent, in order. */
  get serialInput(): Buffer[] {
    return this.#serial.input;
  }
  get stateRequests(): unknown[] {
    return this.requests
      .filter((r) => r.method === "PUT" && r.path === "/instance/state")
      .map((r) => r.body);
  }

  // ---- faults and controls ----------------------------------------------------------------

  failNextStart(): void {
    this.#failStart = true;
  }
  failEnsure(): void {
    this.#failEnsure = true;
  }
  /** Transitions out of `state` never happen (e.g. a stop that never completes). */
  wedgeIn(state: InstanceState | undefined): void {
    this.#wedge = state;
  }
  /** The next n state-change requests get 503 (still initializing). */
  busyNext(n: number): void {
    this.#busy = n;
  }
  /** In-guest power-off: Stopping → Stopped → Destroyed with no request. */
  guestHalt(): void {
    const vm = this.#vm;
    if (!vm || vm.state !== "Running") throw new Error(`guestHalt needs Running, is ${vm?.state}`);
    vm.stopPending = true;
    this.#publish(vm, "Stopping");
    this.#haltSequence(vm);
  }
  /** In-guest reset / triple fault: Rebooting → Running. */
  guestReset(): void {
    const vm = this.#vm;
    if (!vm || vm.state !== "Running") throw new Error(`guestReset needs Running, is ${vm?.state}`);
    this.#publish(vm, "Rebooting");
    this.#later(() => this.#publish(vm, "Running"));
  }
  /** Kills pending long polls' connections (the client sees a reset). */
  dropMonitorConnections(): void {
    for (const w of this.#vm?.waiters ?? []) w.res.socket?.destroy();
    this.#vm?.waiters.clear();
  }
  /** The process dies: connections reset, state lost. boot() brings a fresh one. */
  crash(except?: Socket | Duplex): void {
    this.#alive = false;
    this.#vm = undefined;
    this.#clearTimers();
    this.#serial.terminateClients();
    for (const s of this.#sockets) if (s !== except) s.destroy();
  }
  /** A fresh server process: no VM, empty serial buffer. */
  boot(except?: Socket | Duplex): void {
    this.crash(except);
    this.#alive = true;
    this.#serial.reset();
    this.boots += 1;
  }
  /** Runs the next held transition (manual mode); returns false when none is held. */
  advance(): boolean {
    const next = this.#queue.shift();
    next?.();
    return next !== undefined;
  }
  writeSerial(bytes: Buffer | string): void {
    this.#serial.write(bytes);
  }
  announceMigration(destination: string, fromStart: number): void {
    this.#serial.broadcastText(
      JSON.stringify({ Migrating: { destination, from_start: fromStart } }),
    );
  }

  async close(): Promise<void> {
    this.#clearTimers();
    this.#serial.terminateClients();
    this.#wss.close();
    this.#server.closeAllConnections();
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  // ---- state machine ----------------------------------------------------------------------

  #clearTimers(): void {
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    this.#queue = [];
  }

  #later(fn: () => void): void {
    if (this.#opts.manual) {
      this.#queue.push(fn);
      return;
    }
    const t = setTimeout(() => {
      this.#timers.delete(t);
      fn();
    }, this.#opts.stepMs ?? 5);
    this.#timers.add(t);
  }

  #publish(vm: Vm, state: InstanceState): void {
    if (this.#vm !== vm) return; // a replaced VM publishes nothing
    if (this.#wedge !== undefined && vm.state === this.#wedge && state !== vm.state) return;
    vm.state = state;
    vm.gen += 1;
    if (state === "Running") vm.everRan = true;
    for (const w of [...vm.waiters]) {
      if (w.gen <= vm.gen) {
        vm.waiters.delete(w);
        sendJson(w.res, 200, this.#monitorBody(vm));
      }
    }
    if (state === "Destroyed") {
      this.#serial.closeClients(1001, "VM stopped");
    }
  }

  #haltSequence(vm: Vm): void {
    this.#later(() => {
      this.#publish(vm, "Stopped");
      if (vm.state === "Stopped") this.#later(() => this.#publish(vm, "Destroyed"));
    });
  }

  #monitorBody(vm: Vm) {
    return { gen: vm.gen, state: vm.state, migration: { migration_in: null, migration_out: null } };
  }

  #terminal(vm: Vm): boolean {
    return vm.state === "Stopped" || vm.state === "Destroyed" || vm.state === "Failed";
  }

  // ---- HTTP -------------------------------------------------------------------------------

  #versionError(headers: http.IncomingHttpHeaders): string | undefined {
    const o = this.#opts;
    return apiVersionError(headers, o.latestVersion ?? "5.0.0", o.ignoreVersionHeader ?? false);
  }

  #onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const text = Buffer.concat(chunks).toString("utf8");
      const url = new URL(req.url ?? "/", "http://fake");
      if (url.pathname === "/__fake/process" && req.method === "POST") {
        const action = (JSON.parse(text || "{}") as { action?: string }).action;
        if (action === "boot") this.boot(req.socket);
        else if (action === "halt") this.crash(req.socket);
        return sendJson(res, 200, { alive: this.#alive });
      }
      if (!this.#alive) {
        req.socket.destroy(); // nobody serves this port: connection reset
        return;
      }
      let body: unknown = undefined;
      let bad: string | undefined;
      if (text.length > 0) {
        try {
          body = JSON.parse(text);
        } catch (e) {
          bad = `unable to parse JSON body: ${(e as Error).message}`;
        }
      }
      this.requests.push({
        method: req.method ?? "",
        path: url.pathname,
        headers: req.headers,
        body,
      });
      const ver = this.#versionError(req.headers);
      if (ver) return sendError(res, 400, ver);
      if (bad) return sendError(res, 400, bad);
      this.#route(req.method ?? "", url, body, res);
    });
  }

  #route(method: string, url: URL, body: unknown, res: http.ServerResponse): void {
    const key = `${method} ${url.pathname}`;
    switch (key) {
      case "PUT /instance":
        return this.#ensure(body, res);
      case "GET /instance":
        if (!this.#vm) return this.#noInstance(res);
        return sendJson(res, 200, {
          instance: { properties: this.#vm.properties, state: this.#vm.state },
        });
      case "PUT /instance/state":
        return this.#stateChange(body, res);
      case "GET /instance/state-monitor":
        return this.#monitor(body, res);
      case "GET /instance/serial/history":
        return this.#history(url, res);
      default:
        return sendError(res, 404, "Not Found");
    }
  }

  #noInstance(res: http.ServerResponse): void {
    sendError(res, 424, "Server not initialized (no instance)", "NoInstance");
  }

  #ensure(body: unknown, res: http.ServerResponse): void {
    const old = this.#vm;
    if (old && old.state !== "Destroyed") {
      return sendError(res, 409, "instance already initialized", "AlreadyInitialized");
    }
    const p = InstanceEnsureRequest.safeParse(body);
    if (!p.success) {
      return sendError(
        res,
        400,
        `unable to parse JSON body: ${p.error.issues[0]?.message ?? "invalid"}`,
      );
    }
    if (old) {
      // The old publisher is dropped: its pending polls can never be satisfied.
      for (const w of old.waiters) {
        sendError(
          w.res,
          410,
          `No instance present; will never reach generation ${w.gen}`,
          "NoInstance",
        );
      }
      old.waiters.clear();
    }
    const vm: Vm = {
      properties: p.data.properties,
      spec: p.data.init.value.spec,
      state: "Creating",
      gen: 1,
      startPending: false,
      stopPending: false,
      rebootPending: false,
      everRan: false,
      waiters: new Set(),
    };
    this.#vm = vm;
    if (this.#failEnsure) {
      this.#failEnsure = false;
      this.#publish(vm, "Failed");
      this.#later(() => this.#publish(vm, "Destroyed"));
      return sendError(res, 500, "Internal Server Error", "Internal");
    }
    sendJson(res, 201, { migrate: null });
  }

  #stateChange(body: unknown, res: http.ServerResponse): void {
    const p = InstanceStateRequested.safeParse(body);
    if (!p.success) return sendError(res, 400, "unable to parse JSON body: unknown variant");
    const vm = this.#vm;
    if (!vm || vm.state === "Destroyed") return this.#noInstance(res);
    if (this.#busy > 0) {
      this.#busy -= 1;
      return sendError(res, 503, "Service Unavailable");
    }
    const deny = (reason: string) =>
      sendError(res, 403, "Forbidden", `instance state change not allowed: ${reason}`);
    const terminalReason = vm.state === "Failed" ? REASONS.failed : REASONS.halted;
    switch (p.data) {
      case "Run":
        if (vm.startPending || vm.state === "Starting" || vm.state === "Running") break;
        if (vm.stopPending) return deny(REASONS.haltPending);
        if (this.#terminal(vm)) return deny(terminalReason);
        vm.startPending = true;
        this.#publish(vm, "Starting");
        this.#later(() => {
          vm.startPending = false;
          this.#publish(vm, this.#failStart ? "Failed" : "Running");
          this.#failStart = false;
        });
        break;
      case "Reboot":
        if (vm.rebootPending) break;
        if (vm.stopPending) return deny(REASONS.haltPending);
        if (this.#terminal(vm)) return deny(terminalReason);
        if (vm.startPending || vm.state === "Starting") return deny(REASONS.starting);
        if (!vm.everRan) return deny(REASONS.notActive);
        vm.rebootPending = true;
        this.#publish(vm, "Rebooting");
        this.#later(() => {
          vm.rebootPending = false;
          this.#publish(vm, "Running");
        });
        break;
      case "Stop":
        if (vm.stopPending || this.#terminal(vm)) break; // idempotent
        vm.stopPending = true;
        this.#publish(vm, "Stopping");
        this.#haltSequence(vm);
        break;
    }
    sendJson(res, 204, undefined);
  }

  #monitor(body: unknown, res: http.ServerResponse): void {
    const p = InstanceStateMonitorRequest.safeParse(body);
    if (!p.success) return sendError(res, 400, "unable to parse JSON body: missing field `gen`");
    const vm = this.#vm;
    if (!vm) return this.#noInstance(res);
    if (p.data.gen <= vm.gen) return sendJson(res, 200, this.#monitorBody(vm));
    const w = { gen: p.data.gen, res };
    vm.waiters.add(w);
    res.on("close", () => vm.waiters.delete(w));
  }

  #history(url: URL, res: http.ServerResponse): void {
    const fs = url.searchParams.get("from_start");
    const mr = url.searchParams.get("most_recent");
    if ((fs === null) === (mr === null)) {
      return sendError(res, 400, "Exactly one of 'from_start' or 'most_recent' must be specified.");
    }
    if (!this.#vm) return this.#noInstance(res);
    const max = Number(url.searchParams.get("max_bytes") ?? SERIAL_PAGE);
    const start = fs !== null ? Number(fs) : Math.max(0, this.#serial.total - Number(mr));
    const page = this.#serial.page(start, max);
    if ("error" in page) return sendError(res, 400, page.error);
    sendJson(res, 200, page);
  }

  #onUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    this.#sockets.add(socket);
    socket.on("close", () => this.#sockets.delete(socket));
    const url = new URL(req.url ?? "/", "http://fake");
    if (!this.#alive || url.pathname !== "/instance/serial") {
      socket.destroy();
      return;
    }
    this.requests.push({
      method: "GET",
      path: url.pathname,
      headers: req.headers,
      body: undefined,
    });
    const ver = this.#versionError(req.headers);
    if (ver) return rejectUpgrade(socket, ver);
    this.#wss.handleUpgrade(req, socket, head, (ws) => {
      const vm = this.#vm;
      if (!vm || vm.state === "Destroyed") {
        socket.destroy(); // dropshot answered 101 already; the handler just drops it
        return;
      }
      const fs = url.searchParams.get("from_start");
      const mr = url.searchParams.get("most_recent");
      const start =
        fs !== null
          ? Number(fs)
          : mr !== null
            ? Math.max(0, this.#serial.total - Number(mr))
            : undefined;
      this.#serial.attach(ws, start);
    });
  }
}
