import type { Logger } from "../observability/logger.js";

/** A long-running part of the worker: started in order, stopped in reverse. */
export interface Service {
  readonly name: string;
  /** `stopping` aborts when a stop is asked for while starting: end at the next step. */
  start(stopping: AbortSignal): Promise<void>;
  stop?(): Promise<void>;
  /** How long its stop may take (default 10 s): a drain waits for in-flight commands. */
  readonly stopTimeoutMs?: number;
}

/** A stop step may not hold up the exit longer than this (a dead server, a stalled iterator). */
const STOP_STEP_MS = 10_000;

/**
 * The services of one start attempt, in the order they were started. A stop asked for while
 * starting aborts `stopping`: the next start() refuses with its reason (and services that take
 * the signal end their own steps early); stopAll() then stops what was started, in reverse.
 */
export class ServiceStack {
  readonly #started: Service[] = [];
  /** How long each step of the start took, in order: the "worker running" line says it. */
  readonly timings: { step: string; ms: number }[] = [];
  readonly #stopping = new AbortController();

  constructor(private readonly log: Logger) {}

  get stopping(): AbortSignal {
    return this.#stopping.signal;
  }

  /** Ends the start-up at its next step. */
  abort(): void {
    this.#stopping.abort(new Error("stop asked for while starting"));
  }

  async start<S extends Service>(service: S): Promise<S> {
    this.#stopping.signal.throwIfAborted();
    this.log.debug({ service: service.name }, "starting");
    // On the stack before it starts: a service that fails half way still gets stopped.
    this.#started.push(service);
    await this.timed(service.name, () => service.start(this.#stopping.signal));
    return service;
  }

  /** Runs one step of the start that is not a service, timed like one. */
  async timed<T>(step: string, work: () => Promise<T>): Promise<T> {
    const t0 = performance.now();
    try {
      return await work();
    } finally {
      this.timings.push({ step, ms: Math.round((performance.now() - t0) * 10) / 10 });
    }
  }

  /** Stops every started service in reverse order, each bounded; a failure is logged, not thrown. */
  async stopAll(): Promise<void> {
    for (let s = this.#started.pop(); s; s = this.#started.pop()) {
      if (s.stop) await this.#bounded(s.stop(), s.name, s.stopTimeoutMs ?? STOP_STEP_MS);
    }
  }

  async #bounded(step: Promise<unknown>, what: string, ms: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      step.catch((e: unknown) => this.log.warn({ err: e }, `shutdown: stopping ${what} failed`)),
      new Promise<void>((r) => {
        timer = setTimeout(() => {
          this.log.warn(`shutdown: stopping ${what} took over ${ms / 1000} s; going on`);
          r();
        }, ms);
      }),
    ]);
    clearTimeout(timer);
  }
}
