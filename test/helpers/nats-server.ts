import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { execa, type ResultPromise } from "execa";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { readPortsFile } from "../../src/worker/nats/embedded-nats.js";

export interface NatsServerOptions {
  /** Extra config lines (auth, accounts, TLS...). */
  config?: string;
  /** Reuse a store directory (for restart tests). */
  storeDir?: string;
  /** Fixed port (restart on the same port); default: a free one. */
  port?: number;
  /** Serve nats-server's monitoring endpoints (/connz, ...) on a free port: `monitorUrl`. */
  monitoring?: boolean;
}

const SPAWN = { reject: false, stdio: ["ignore", "ignore", "pipe"] } as const;
type Proc = ResultPromise<typeof SPAWN>;

/** A private `nats-server -js` for one test: free port, temporary store, removed afterwards. */
export class NatsServer {
  private constructor(
    readonly url: string,
    readonly port: number,
    readonly storeDir: string,
    readonly dir: string,
    private proc: Proc,
    private readonly opts: NatsServerOptions,
    /** http://127.0.0.1:<port> of the monitoring endpoints (with `monitoring: true`). */
    public monitorUrl: string | undefined,
  ) {}

  static async start(opts: NatsServerOptions = {}): Promise<NatsServer> {
    const bin = await findNatsServer();
    const dir = await mkdtemp(join(tmpdir(), "vmq-nats-"));
    const storeDir = opts.storeDir ?? join(dir, "js");
    const { proc, port, monitorUrl } = await launch(bin, dir, storeDir, opts);
    return new NatsServer(`nats://127.0.0.1:${port}`, port, storeDir, dir, proc, opts, monitorUrl);
  }

  get pid(): number | undefined {
    return this.proc.pid;
  }

  async connect(): Promise<NatsConnection> {
    // The same client setting as the worker's (src/worker/connect.ts), so the benchmark's
    // baseline and the worker are measured with one client configuration.
    return connect({
      servers: this.url,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 100,
      noAsyncTraces: true,
    });
  }

  /** Kills the server (SIGKILL by default) and keeps the store for restart(). */
  async kill(signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
    this.proc.kill(signal);
    await this.proc.catch(() => undefined);
  }

  /** Starts it again on the same port and store. */
  async restart(): Promise<void> {
    const bin = await findNatsServer();
    const { proc, monitorUrl } = await launch(bin, this.dir, this.storeDir, {
      ...this.opts,
      port: this.port,
    });
    this.proc = proc;
    this.monitorUrl = monitorUrl; // a free port again: not the one before
  }

  async stop(): Promise<void> {
    await this.kill("SIGTERM");
    await rm(this.dir, { recursive: true, force: true });
  }
}

async function launch(
  bin: string,
  dir: string,
  storeDir: string,
  opts: NatsServerOptions,
): Promise<{ proc: Proc; port: number; monitorUrl: string | undefined }> {
  const portsDir = join(dir, `ports-${Date.now()}`);
  const conf = join(dir, "server.conf");
  await writeFile(
    conf,
    [
      `listen: "127.0.0.1:${opts.port ?? -1}"`,
      `ports_file_dir: ${JSON.stringify(portsDir)}`,
      `jetstream { store_dir: ${JSON.stringify(storeDir)} }`,
      opts.monitoring ? `http: "127.0.0.1:-1"` : "",
      opts.config ?? "",
    ].join("\n"),
  );
  await mkdir(portsDir, { recursive: true });
  const proc = execa(bin, ["-c", conf], SPAWN);
  let stderr = "";
  proc.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
  for (let i = 0; i < 200; i++) {
    // One file, written in one go: the client URL and, with monitoring on, the monitoring one.
    const ports = await readPortsFile(portsDir);
    const u = ports?.nats?.[0];
    if (u) return { proc, port: Number(new URL(u).port), monitorUrl: ports?.monitoring?.[0] };
    if (proc.exitCode !== null) break;
    await delay(50);
  }
  proc.kill("SIGKILL");
  throw new Error(`nats-server did not start: ${stderr.slice(-2000)}`);
}

let cached: string | undefined;
export async function findNatsServer(): Promise<string> {
  cached ??= await locateNatsServer([
    process.env.NATS_SERVER_BIN,
    "/usr/sbin/nats-server",
    "/usr/bin/nats-server",
    "/usr/local/bin/nats-server",
  ]);
  return cached;
}

/** The first candidate that runs `--version`, or an error that says how to install one. */
export async function locateNatsServer(candidates: (string | undefined)[]): Promise<string> {
  for (const p of candidates) {
    if (!p) continue;
    try {
      await execa(p, ["--version"]);
      return p;
    } catch {
      /* try the next */
    }
  }
  throw new Error(
    "nats-server is not installed: run ./setup.sh (it installs Debian's nats-server package), or set NATS_SERVER_BIN",
  );
}

/** A prefix no other test uses, so streams and subjects never collide. */
export const testPrefix = (): string => `t${Math.random().toString(36).slice(2, 10)}`;
