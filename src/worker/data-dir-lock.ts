import { randomBytes } from "node:crypto";
import { link, lstat, mkdir, readFile, rename, unlink, writeFile } from "node:fs/promises";
import { connect, createServer, type Server } from "node:net";
import { relative, resolve } from "node:path";
import { VmqError } from "../lib/errors.js";
import type { Logger } from "../observability/logger.js";
import type { Service } from "./service-stack.js";

/** The lock: a Unix-domain socket in the data dir. The holder file only names who holds it. */
export const LOCK_SOCKET = "vmq.lock";
export const LOCK_HOLDER = "vmq.lock.json";
/** sun_path is 108 bytes on Linux and illumos (104 on the BSDs), its NUL included. */
const MAX_SOCKET_PATH = 100;
/** How long a live holder has to say who it is before it counts as "held, holder silent". */
const ANSWER_MS = 1_000;

export interface LockHolder {
  pid?: number;
  /** The embedded nats-server, which shares the lock (it inherited the socket). */
  natsServerPid?: number;
  since?: string;
}

type Probe =
  | { kind: "live"; holder: LockHolder | undefined }
  | { kind: "stale" }
  | { kind: "gone" }
  | { kind: "error"; error: NodeJS.ErrnoException };

/**
 * The data dir belongs to one worker (and its embedded nats-server) at a time. Node has no
 * flock, a native addon needs a compiler, and util-linux's flock(1) is neither on illumos nor
 * able to share its lock with our child; a Unix-domain socket bound in the data dir does all
 * of it with nothing installed: bind succeeds for one holder only, the kernel releases it when
 * the last process holding its descriptor dies, a connect tells a live holder (it answers with
 * its pid) from a stale file (ECONNREFUSED), and the embedded nats-server inherits the socket
 * (fd 3), so the lock outlives a SIGKILLed worker for as long as that child still uses the store.
 */
export class DataDirLock implements Service {
  readonly name = "data-dir lock";
  readonly dir: string;
  readonly #socketPath: string;
  #server: Server | undefined;
  #ino: number | undefined;
  #holder: LockHolder = {};

  constructor(
    dataDir: string,
    private readonly log: Logger,
  ) {
    this.dir = resolve(dataDir);
    this.#socketPath = socketPathFor(this.dir);
  }

  /** The listening socket's descriptor, for a child that must hold the lock too. */
  get fd(): number | undefined {
    const fd = (this.#server as unknown as { _handle?: { fd?: unknown } } | undefined)?._handle?.fd;
    return typeof fd === "number" && fd >= 0 ? fd : undefined;
  }

  async start(): Promise<void> {
    if (this.#server) return; // taken already (by the CLI, before it loaded the worker)
    await mkdir(this.dir, { recursive: true }).catch((e: unknown) => {
      throw new VmqError("worker::data-dir-unusable", `cannot create the data dir ${this.dir}`, {
        cause: e,
      });
    });
    for (let attempt = 0; attempt < 4; attempt++) {
      const server = await listen(this.#socketPath);
      if (server) {
        this.#server = server;
        this.#ino = (await lstat(this.#socketPath)).ino;
        this.#holder = { pid: process.pid, since: new Date().toISOString() };
        server.on("connection", (s) => s.end(`${JSON.stringify(this.#holder)}\n`));
        await this.#writeHolder();
        this.log.debug({ dir: this.dir }, "data dir locked");
        return;
      }
      await this.#clearIfStale();
    }
    throw new VmqError(
      "worker::data-dir-unusable",
      `could not take the lock of the data dir ${this.dir} (it kept changing under this worker)`,
    );
  }

  /** The embedded nats-server shares the lock: a holder that is asked names it too. */
  async sharedWith(natsServerPid: number | undefined): Promise<void> {
    const { pid, since } = this.#holder;
    this.#holder = { ...(pid ? { pid } : {}), ...(since ? { since } : {}) };
    if (natsServerPid !== undefined) this.#holder.natsServerPid = natsServerPid;
    await this.#writeHolder();
  }

  async stop(): Promise<void> {
    const server = this.#server;
    if (!server) return;
    this.#server = undefined;
    // Our own socket file only: a takeover race may have put another there.
    const mine = (await lstat(this.#socketPath).catch(() => undefined))?.ino === this.#ino;
    await new Promise<void>((r) => server.close(() => r()));
    if (mine) {
      await unlink(this.#socketPath).catch(() => undefined);
      await unlink(resolve(this.dir, LOCK_HOLDER)).catch(() => undefined);
    }
  }

  /** Throws when a live holder has it; removes the file of a dead one (only that file). */
  async #clearIfStale(): Promise<void> {
    const seen = await lstat(this.#socketPath).catch(() => undefined);
    const probe = await probeLock(this.#socketPath);
    if (probe.kind === "live") throw await this.#locked(probe.holder);
    if (probe.kind === "error")
      throw new VmqError("worker::data-dir-unusable", `cannot read the lock of ${this.dir}`, {
        cause: probe.error,
      });
    if (probe.kind === "gone" || !seen) return;
    // Stale: move it aside and check it is the file we saw refuse, not a newer holder's.
    const aside = `${this.#socketPath}.stale-${process.pid}-${randomBytes(4).toString("hex")}`;
    if (
      !(await rename(this.#socketPath, aside).then(
        () => true,
        () => false,
      ))
    )
      return;
    const moved = await lstat(aside);
    if (moved.ino === seen.ino && moved.dev === seen.dev) {
      const last = await this.#recorded();
      this.log.info({ dir: this.dir, lastHolder: last }, "removed the data dir's stale lock");
    } else await link(aside, this.#socketPath).catch(() => undefined); // put theirs back
    await unlink(aside).catch(() => undefined);
  }

  async #locked(answered: LockHolder | undefined): Promise<VmqError> {
    const h = answered ?? (await this.#recorded());
    const who =
      answered?.pid !== undefined
        ? `vmq worker pid ${answered.pid}${answered.natsServerPid ? ` (embedded nats-server pid ${answered.natsServerPid})` : ""}`
        : h?.natsServerPid
          ? `the embedded nats-server pid ${h.natsServerPid} of vmq worker pid ${String(h.pid)}, which no longer answers`
          : `a process that does not answer${h?.pid ? ` (last holder recorded: pid ${h.pid})` : ""}`;
    return new VmqError(
      "worker::data-dir-locked",
      `the data dir ${this.dir} is in use by ${who}; nothing was started`,
      {
        hint: "One worker per data dir: stop that process first, or give this worker a data dir of its own (--data-dir).",
      },
    );
  }

  async #recorded(): Promise<LockHolder | undefined> {
    try {
      return JSON.parse(await readFile(resolve(this.dir, LOCK_HOLDER), "utf8")) as LockHolder;
    } catch {
      return undefined;
    }
  }

  async #writeHolder(): Promise<void> {
    await writeFile(resolve(this.dir, LOCK_HOLDER), `${JSON.stringify(this.#holder)}\n`).catch(
      (e: unknown) => this.log.warn({ err: e }, "could not write the lock's holder file"),
    );
  }
}

/** The socket's path, relative to the working dir when the absolute one is too long. */
function socketPathFor(dir: string): string {
  const abs = resolve(dir, LOCK_SOCKET);
  if (Buffer.byteLength(abs) <= MAX_SOCKET_PATH) return abs;
  const rel = relative(process.cwd(), abs);
  if (Buffer.byteLength(rel) <= MAX_SOCKET_PATH) return rel;
  throw new VmqError(
    "worker::data-dir-unusable",
    `the data dir path ${dir} is too long for its lock (a Unix socket path is at most ${MAX_SOCKET_PATH} bytes)`,
    { hint: "Use a shorter --data-dir, or start the worker from a nearer working directory." },
  );
}

/** A listening server on `path`, or undefined when the path is taken. */
function listen(path: string): Promise<Server | undefined> {
  return new Promise((res, rej) => {
    const server = createServer();
    server.once("error", (e: NodeJS.ErrnoException) =>
      e.code === "EADDRINUSE"
        ? res(undefined)
        : rej(
            new VmqError("worker::data-dir-unusable", `cannot lock the data dir at ${path}`, {
              cause: e,
            }),
          ),
    );
    server.listen(path, () => {
      server.removeAllListeners("error");
      server.unref(); // the lock keeps no process alive by itself
      res(server);
    });
  });
}

/**
 * Who holds the socket at `path`: live (it accepts, or its queue is full), stale (refused: no
 * process has it open), gone (no file), or an error (e.g. no permission) that removes nothing.
 */
export function probeLock(path: string): Promise<Probe> {
  return new Promise((res) => {
    const s = connect(path);
    let text = "";
    let connected = false;
    const done = (p: Probe) => {
      clearTimeout(timer);
      s.destroy();
      res(p);
    };
    const timer = setTimeout(() => done({ kind: "live", holder: undefined }), ANSWER_MS);
    s.on("connect", () => (connected = true));
    s.on("data", (d: Buffer) => (text += d.toString()));
    s.on("end", () => done({ kind: "live", holder: parseHolder(text) }));
    s.on("error", (e: NodeJS.ErrnoException) => {
      if (connected || e.code === "EAGAIN") done({ kind: "live", holder: parseHolder(text) });
      else if (e.code === "ECONNREFUSED") done({ kind: "stale" });
      else done(e.code === "ENOENT" ? { kind: "gone" } : { kind: "error", error: e });
    });
  });
}

function parseHolder(text: string): LockHolder | undefined {
  try {
    const h = JSON.parse(text) as LockHolder;
    return typeof h.pid === "number" ? h : undefined;
  } catch {
    return undefined;
  }
}
