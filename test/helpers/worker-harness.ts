import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { NatsConnection } from "@nats-io/transport-node";
import { VmqClient } from "../../src/client/index.js";
import type { WorkerConfigInput } from "../../src/config/config.js";
import {
  FaultyBackend,
  HypervisorRouter,
  NoopBackend,
  type FaultOptions,
  type Hypervisor,
  type NoopOptions,
} from "../../src/hypervisor/index.js";
import { silentLogger, createLogger } from "../../src/observability/logger.js";
import { Worker } from "../../src/worker/worker.js";
import { NatsServer, testPrefix, type NatsServerOptions } from "./nats-server.js";

export const SPEC = { name: "web", imagePath: "/images/base.qcow2", vcpus: 1, memoryMb: 256 };

/** The Noop backend in fault injection (failNext, hangStop, vanish, latencyMs, calls): `noop`. */
export type TestNoop = FaultyBackend<NoopBackend>;

/** A Noop backend wrapped for tests; its own state (peek, seed) is at `.inner`. */
export function testNoop(opts: NoopOptions & FaultOptions = {}): TestNoop {
  const { latencyMs, keepCalls, ...noop } = opts;
  return new FaultyBackend(new NoopBackend(noop), {
    ...(latencyMs === undefined ? {} : { latencyMs }),
    ...(keepCalls === undefined ? {} : { keepCalls }),
  });
}

/** A nats-server, an in-process worker on a Noop backend, and a scheduler-side client. */
export class Harness {
  workers: Worker[] = [];
  #started = 0;
  private constructor(
    readonly server: NatsServer,
    readonly nc: NatsConnection,
    readonly client: VmqClient,
    readonly prefix: string,
    readonly dataDir: string,
  ) {}

  static async start(serverOpts: NatsServerOptions = {}): Promise<Harness> {
    const server = await NatsServer.start(serverOpts);
    const nc = await server.connect();
    const prefix = testPrefix();
    const dataDir = await mkdtemp(join(tmpdir(), "vmq-data-"));
    return new Harness(
      server,
      nc,
      new VmqClient(nc, { prefix, timeoutMs: 30_000 }),
      prefix,
      dataDir,
    );
  }

  async worker(
    opts: Partial<WorkerConfigInput> & {
      noop?: NoopOptions & FaultOptions;
      backend?: TestNoop;
      /** Other backends beside the Noop (e.g. Propolis on fakes). */
      extra?: Hypervisor[];
    } = {},
  ): Promise<{ worker: Worker; noop: TestNoop }> {
    const { noop: noopOpts, backend, extra, ...config } = opts;
    const noop = backend ?? testNoop(noopOpts);
    const worker = new Worker(
      {
        nats: this.server.url,
        prefix: this.prefix,
        host: "h1",
        // A data dir of its own: a data dir is locked by the worker that uses it.
        dataDir: join(this.dataDir, `w${this.#started++}`),
        reconcileIntervalMs: 0,
        heartbeatMs: 500,
        ...config,
      },
      {
        router: new HypervisorRouter([noop, ...(extra ?? [])]),
        logger: process.env.VMQ_TEST_LOG
          ? createLogger({ level: process.env.VMQ_TEST_LOG })
          : silentLogger(),
      },
    );
    await worker.start();
    this.workers.push(worker);
    return { worker, noop };
  }

  async stop(): Promise<void> {
    for (const w of this.workers) await w.drain().catch(() => undefined);
    await this.nc.close();
    await this.server.stop();
    await rm(this.dataDir, { recursive: true, force: true });
  }
}

/** Polls until `check` returns a value (not undefined, not throwing), or fails after `timeoutMs`. */
export async function eventually<T>(
  check: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 15_000,
  what = "condition",
): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      // A check that never settles must not hang the test past its own deadline.
      const left = Math.max(1_000, end - Date.now());
      let timer: NodeJS.Timeout | undefined;
      const v = await Promise.race([
        Promise.resolve(check()),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`a check hung for ${left} ms`)), left);
        }),
      ]).finally(() => clearTimeout(timer));
      if (v !== undefined) return v;
    } catch (e) {
      last = e; // not there yet (a stream still being created, say): try again
    }
    if (Date.now() > end)
      throw new Error(
        `timed out waiting for ${what}${last ? `; last error: ${last instanceof Error ? last.message : JSON.stringify(last)}` : ""}`,
      );
    await new Promise((r) => setTimeout(r, 50));
  }
}
