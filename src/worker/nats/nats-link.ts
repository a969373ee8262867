import {
  jetstream,
  jetstreamManager,
  type JetStreamClient,
  type JetStreamManager,
} from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { workerInboxPrefix } from "../../contracts/permissions.js";
import { JetStreamPublisher } from "../../event-store/publisher.js";
import { isVmqError, VmqError } from "../../lib/errors.js";
import { retry } from "../../lib/retry.js";
import type { Logger } from "../../observability/logger.js";
import type { Service } from "../service-stack.js";
import { connectNats, type ConnectionConfig } from "./connect.js";
import { startEmbeddedNats, type EmbeddedNats } from "./embedded-nats.js";

export type ConnectionName = "commands" | "events";

export interface NatsLinkConfig extends ConnectionConfig {
  host: string;
  dataDir: string;
  embeddedPort: number;
}

/** The data dir's lock, which the embedded nats-server shares (see data-dir-lock.ts). */
export interface SharedLock {
  readonly fd: number | undefined;
  sharedWith(natsServerPid: number | undefined): Promise<void>;
}

/** A start waiting for NATS to be reachable: since when, and how many tries so far. */
export interface NatsWait {
  since: Date;
  attempts: number;
  error: string;
}

/** At most one "still waiting" line this often (the first failure is always logged). */
const WAIT_LOG_MS = 30_000;

/**
 * The worker's NATS: an embedded nats-server when no URL is given, and two connections.
 * `commands` consumes commands (pull requests, acks) and serves queries, the console and the
 * host record; `events` carries the event appends and the view records. nats-server reads each
 * connection on one goroutine, in order: on one connection the appends waited behind the acks
 * and pull requests; on two they run on both cores.
 */
export class NatsLink implements Service {
  readonly name = "NATS";
  #embedded: EmbeddedNats | undefined;
  #nc: NatsConnection | undefined;
  #events: NatsConnection | undefined;
  #publisher: JetStreamPublisher | undefined;
  /** Connections that are down now: the worker is connected when none is. */
  readonly #away = new Set<ConnectionName>();
  #waiting: NatsWait | undefined;

  constructor(
    private readonly config: NatsLinkConfig,
    private readonly log: Logger,
    /** Told when a connection is back after a disconnect. */
    private readonly onReconnect: (connection: ConnectionName) => void,
    private readonly lock?: SharedLock,
  ) {}

  /** Set while start() waits for an unreachable NATS (for /readyz). */
  get waiting(): NatsWait | undefined {
    return this.#waiting;
  }

  get url(): string | undefined {
    return this.config.nats ?? this.#embedded?.url;
  }
  /** Both connections are up. */
  get connected(): boolean {
    return this.#events !== undefined && this.#away.size === 0;
  }
  /** The server a connection is on now (host:port). */
  server(connection: ConnectionName): string | undefined {
    return (connection === "commands" ? this.#nc : this.#events)?.getServer();
  }
  get commands(): NatsConnection {
    return required(this.#nc);
  }
  get events(): NatsConnection {
    return required(this.#events);
  }
  /** The appends' (and acks') batched publisher, on the events connection. */
  get publisher(): JetStreamPublisher {
    return required(this.#publisher);
  }
  get js(): JetStreamClient {
    return jetstream(this.commands);
  }
  jsm(): Promise<JetStreamManager> {
    return jetstreamManager(this.commands);
  }

  async start(stopping?: AbortSignal): Promise<void> {
    const { config } = this;
    this.#away.clear(); // a retried start: the last attempt's connections are gone
    if (!config.nats) {
      const fd = this.lock?.fd;
      this.#embedded = await startEmbeddedNats(config.dataDir, config.embeddedPort, this.log, fd);
      await this.lock?.sharedWith(this.#embedded.pid);
    }
    const c = { ...config, nats: this.url };
    // Replies come to _INBOX_<host>.*: the host's credentials need not read other inboxes.
    const inboxPrefix = workerInboxPrefix(config.host);
    this.#nc = await this.#connectWaiting(
      () => connectNats(c, `vmq-worker-${config.host}`, { inboxPrefix }),
      stopping,
    );
    this.#watch(this.#nc, "commands");
    this.#events = await this.#connectWaiting(
      () => connectNats(c, `vmq-worker-${config.host}-events`, { inboxPrefix }),
      stopping,
    );
    this.#watch(this.#events, "events");
    // The appends (and the acks) of one event-loop turn go out together (see the publisher).
    this.#publisher = new JetStreamPublisher(this.#events, inboxPrefix);
  }

  async stop(): Promise<void> {
    this.#publisher?.close();
    for (const nc of [this.#events, this.#nc]) {
      if (!nc || nc.isClosed()) continue;
      const drained = await Promise.race([
        nc.drain().then(
          () => true,
          () => false,
        ),
        new Promise<boolean>((r) => setTimeout(() => r(false), 10_000).unref()),
      ]);
      if (!drained) await nc.close();
    }
    await this.#embedded?.stop();
  }

  /**
   * A daemon started before its NATS (a boot, a NATS restart) waits for it instead of exiting:
   * retries with backoff while the server is unreachable, for --nats-wait-ms (unset: for ever),
   * ending at once on a stop. Refused credentials or TLS are not waited for.
   */
  async #connectWaiting(
    connect: () => Promise<NatsConnection>,
    stopping: AbortSignal | undefined,
  ): Promise<NatsConnection> {
    const boundMs = this.config.natsWaitMs;
    let logged = 0;
    try {
      return await retry(connect, {
        baseMs: 250,
        capMs: 5_000,
        ...(boundMs === undefined ? {} : { timeoutMs: boundMs }),
        ...(stopping ? { signal: stopping } : {}),
        retryIf: (e) => isVmqError(e, "nats::unreachable"),
        onRetry: (e, attempts, waitMs) => {
          const error = e instanceof Error ? e.message : String(e);
          this.#waiting = { since: this.#waiting?.since ?? new Date(), attempts, error };
          if (Date.now() - logged < WAIT_LOG_MS) return;
          logged = Date.now();
          const bound =
            boundMs === undefined ? "no limit; --nats-wait-ms sets one" : `up to ${boundMs} ms`;
          this.log.warn({ attempts, waitMs, err: error }, `waiting for NATS (${bound})`);
        },
      });
    } catch (e) {
      if (this.#waiting && isVmqError(e, "nats::unreachable"))
        throw new VmqError(
          "nats::unreachable",
          `gave up waiting for NATS after ${Date.now() - this.#waiting.since.getTime()} ms (--nats-wait-ms ${String(boundMs)}): ${e.message}`,
          { cause: e },
        );
      throw e;
    } finally {
      if (this.#waiting)
        this.log.info({ attempts: this.#waiting.attempts }, "done waiting for NATS");
      this.#waiting = undefined;
    }
  }

  #watch(nc: NatsConnection, connection: ConnectionName): void {
    void (async () => {
      for await (const s of nc.status()) {
        if (s.type === "disconnect") {
          this.#away.add(connection);
          this.log.warn({ server: s.server, connection }, "NATS disconnected; reconnecting");
        } else if (s.type === "reconnect") {
          this.#away.delete(connection);
          this.log.info({ server: s.server, connection }, "NATS reconnected");
          this.onReconnect(connection);
        }
      }
    })();
  }
}

function required<T>(v: T | undefined): T {
  if (v === undefined) throw new Error("NATS is not connected yet");
  return v;
}
