import { existsSync } from "node:fs";
import { mkdir, readFile, readdir, rm } from "node:fs/promises";
import { join, resolve } from "node:path";
import { execa } from "execa";
import { VmqError } from "../../lib/errors.js";
import { waitFor } from "../../lib/retry.js";
import type { Logger } from "../../observability/logger.js";

const CANDIDATES = ["/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"];

export interface EmbeddedNats {
  url: string;
  pid: number | undefined;
  stop(): Promise<void>;
}

/** How long a stopping nats-server may take before it is killed (its store is fsynced). */
const STOP_MS = 8_000;

/**
 * The embedded default: a local `nats-server -js` with its store under the data dir, bound to
 * loopback, stopped with the worker. One machine works with nothing else installed or running.
 * `lockFd` is the data dir's lock (data-dir-lock.ts), given to the server as its fd 3: the
 * store stays locked while this server runs, even past a SIGKILLed worker. The caller holds
 * the lock before calling: nothing here touches the data dir until then. (nats-server 2.9.10
 * does not lock its store itself: a second one on the same -sd starts and runs; tried.)
 */
export async function startEmbeddedNats(
  dataDir: string,
  port: number,
  log: Logger,
  lockFd?: number,
): Promise<EmbeddedNats> {
  const bin = process.env.NATS_SERVER_BIN ?? CANDIDATES.find((p) => existsSync(p));
  if (!bin) {
    throw new VmqError(
      "nats::server-missing",
      "no NATS URL was given and nats-server is not installed",
      {
        hint: "Run ./setup.sh (installs Debian's nats-server), or pass --nats nats://host:4222.",
      },
    );
  }
  const store = resolve(dataDir, "nats");
  const portsDir = resolve(dataDir, "nats-ports");
  await mkdir(store, { recursive: true });
  await rm(portsDir, { recursive: true, force: true });
  await mkdir(portsDir, { recursive: true });
  const proc = execa(
    bin,
    [
      "-js",
      "-sd",
      store,
      "-a",
      "127.0.0.1",
      "-p",
      String(port === 0 ? -1 : port),
      "--ports_file_dir",
      portsDir,
    ],
    {
      reject: false,
      // execa hands a descriptor number to spawn as it is (its types allow one at 0-2 only).
      stdio: ["ignore", "ignore", "pipe", (lockFd ?? "ignore") as "ignore"],
      cleanup: true,
    },
  );
  let stderr = "";
  proc.stderr.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  // Up to 10 s for the ports file; a server that exited (a port in use, say) ends the wait.
  const url = await waitFor(
    async () => (await portsFileUrl(portsDir)) ?? (proc.exitCode !== null ? "" : undefined),
    { intervalMs: 50, timeoutMs: 10_000 },
  );
  if (url) {
    log.info({ url, store, natsServerPid: proc.pid }, "embedded nats-server started");
    return {
      url,
      pid: proc.pid,
      stop: async () => {
        // The lock is released after this: the server must be gone, not just asked to go.
        proc.kill("SIGTERM");
        const timer = setTimeout(() => proc.kill("SIGKILL"), STOP_MS);
        await proc;
        clearTimeout(timer);
      },
    };
  }
  proc.kill("SIGKILL");
  throw new VmqError(
    "nats::embedded-failed",
    `the embedded nats-server did not start: ${stderr.trim().split("\n").slice(-3).join(" / ")}`,
    {
      // Never "use another port" alone: that is how two servers came to share one store. The
      // data dir is locked now, so a clash is with a process of another data dir (or not vmq).
      hint: `Is port ${port} taken by another process? Stop it, or run this worker with --nats pointing at a running server; a worker with a data dir of its own may also take another --embedded-port.`,
    },
  );
}

/**
 * What nats-server wrote to its ports file in `dir` (`ports_file_dir`): its client URLs and,
 * with monitoring on, the monitoring ones. Undefined while there is none yet. The server may
 * still be writing it: half a file reads as undefined, to be read again on the next round.
 */
export async function readPortsFile(
  dir: string,
): Promise<{ nats?: string[]; monitoring?: string[] } | undefined> {
  const f = (await readdir(dir).catch(() => [])).find((n) => n.endsWith(".ports"));
  if (!f) return undefined;
  try {
    return JSON.parse(await readFile(join(dir, f), "utf8")) as {
      nats?: string[];
      monitoring?: string[];
    };
  } catch {
    return undefined;
  }
}

/** The client URL from the ports file in `dir` (see readPortsFile), or undefined. */
export async function portsFileUrl(dir: string): Promise<string | undefined> {
  return (await readPortsFile(dir))?.nats?.[0];
}
