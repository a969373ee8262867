import {
  jetstream,
  jetstreamManager,
  type JetStreamClient,
  type JetStreamManager,
} from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { workerInboxPrefix } from "../../contracts/permissions.js";
import { JetStreamPublisher } from "../../event-store/publisher.js";
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

  constructor(
    private readonly config: NatsLinkConfig,
    private readonly log: Logger,
    /** Told when a connection is back after a disconnect. */
    private readonly onReconnect: (connection: ConnectionName) => void,
  ) {}

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

  async start(): Promise<void> {
    const { config } = this;
    this.#away.clear(); // a retried start: the last attempt's connections are gone
    if (!config.nats)
      this.#embedded = await startEmbeddedNats(config.dataDir, config.embeddedPort, this.log);
    const c = { ...config, nats: this.url };
    // Replies come to _INBOX_<host>.*: the host's credentials need not read other inboxes.
    const inboxPrefix = workerInboxPrefix(config.host);
    this.#nc = await connectNats(c, `vmq-worker-${config.host}`, { inboxPrefix });
    this.#watch(this.#nc, "commands");
    this.#events = await connectNats(c, `vmq-worker-${config.host}-events`, { inboxPrefix });
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
