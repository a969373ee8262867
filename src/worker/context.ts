import type { JetStreamClient } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import type { Names } from "../contracts/index.js";
import type { ResolvedConfig } from "../config/config.js";
import type { EventStore } from "../event-store/event-store.js";
import type { HypervisorRouter } from "../hypervisor/index.js";
import type { Logger } from "../observability/logger.js";
import type { OrderGate } from "./order-gate.js";
import type { VmRegistry } from "./vm-registry.js";
import type { WorkerStats } from "./stats.js";

/** What the worker's parts share; built once by worker.ts. */
export interface WorkerContext {
  host: string;
  names: Names;
  config: ResolvedConfig;
  js: JetStreamClient;
  store: EventStore;
  registry: VmRegistry;
  /** Keeps each VM's commands in stream order across crashes and retries. */
  order: OrderGate;
  router: HypervisorRouter;
  vmsView: KV;
  log: Logger;
  stats: WorkerStats;
  /** Fires when a drain gives up waiting: in-flight commands are abandoned, intents kept. */
  abandon: AbortSignal;
  now: () => Date;
  newId: () => string;
}
