/** Pieces of least-privilege.test.ts: a Noop worker connecting as a NATS user, and a refusal check. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { readFile } from "node:fs/promises";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { HypervisorRouter, NoopBackend } from "../../src/hypervisor/index.js";
import { silentLogger } from "../../src/observability/logger.js";
import { Worker } from "../../src/worker/worker.js";

export interface UserWorker {
  url: string;
  prefix: string;
  host: string;
  /** Parent of the worker's data dir (`<dir>/<host>`). */
  dir: string;
  user: string;
  password: string;
  extra?: { snapshots?: "on" | "off"; retentionMs?: number; compactIntervalMs?: number };
}

/** A started in-process worker on the Noop backend that connects as `user`. */
export async function startUserWorker(o: UserWorker): Promise<Worker> {
  const w = new Worker(
    {
      nats: o.url,
      prefix: o.prefix,
      host: o.host,
      dataDir: join(o.dir, o.host),
      reconcileIntervalMs: 0,
      heartbeatMs: 500,
      user: o.user,
      password: o.password,
      ...o.extra,
    },
    { router: new HypervisorRouter([new NoopBackend()]), logger: silentLogger() },
  );
  await w.start();
  return w;
}

/** Subscribing to `subject` on a fresh connection is refused by the server (a permissions error). */
export async function assertSubscriptionRefused(
  connect: () => Promise<NatsConnection>,
  subject: string,
): Promise<void> {
  const other = await connect();
  const denied = (async () => {
    for await (const st of other.status())
      if (st.type === "error" && /permissions violation/i.test(String(st.error))) return true;
    return false;
  })();
  other.subscribe(subject);
  await other.flush();
  const refused = await Promise.race([denied, delay(2_000).then(() => false)]);
  await other.close();
  assert.ok(refused, `subscribing to ${subject} must be refused`);
}

/** The permission violations a server logged to `logFile` whose line passes `keep`. */
export async function loggedViolations(
  logFile: string,
  keep: (line: string) => boolean,
): Promise<string[]> {
  return (await readFile(logFile, "utf8"))
    .split("\n")
    .filter((l) => /violation/i.test(l) && keep(l));
}

/** A connection as `user` that never reconnects; a worker's user gets its host's inbox prefix. */
export const connectAs = (
  url: string,
  user: string,
  pass: string,
  name: string,
  inboxPrefix?: string,
) =>
  connect({
    servers: url,
    user,
    pass,
    name,
    maxReconnectAttempts: 0,
    ...(inboxPrefix ? { inboxPrefix } : {}),
  });
