/**
 * Per-VM lanes: tasks for one key run strictly one at a time in arrival order; different
 * keys run in parallel up to `concurrency`. A busy VM never blocks the VMs behind it.
 */
export interface LaneTask {
  run(): Promise<void>;
  /** Called instead of run() when the lanes are drained before the task started. */
  abandon(): void;
}

export class Lanes {
  readonly #queues = new Map<string, LaneTask[]>();
  /** Keys with a task to start, oldest first from #head (an array shift() is O(n) per call). */
  #ready: string[] = [];
  #head = 0;
  readonly #active = new Set<string>();
  #running = 0;
  #idleWaiters: (() => void)[] = [];

  constructor(private readonly concurrency: number) {}

  get running(): number {
    return this.#running;
  }

  get queued(): number {
    let n = 0;
    for (const q of this.#queues.values()) n += q.length;
    return n;
  }

  push(key: string, task: LaneTask): void {
    const q = this.#queues.get(key);
    if (q) q.push(task);
    else {
      this.#queues.set(key, [task]);
      if (!this.#active.has(key)) this.#ready.push(key);
    }
    this.#schedule();
  }

  /**
   * Runs `fn` in the key's lane (after what is queued there) and resolves with its result, or
   * with undefined when the lanes are drained before it started.
   */
  run<T>(key: string, fn: () => Promise<T>): Promise<T | undefined> {
    return new Promise((resolve, reject) => {
      this.push(key, {
        run: () => fn().then(resolve, reject),
        abandon: () => resolve(undefined),
      });
    });
  }

  /** Whether the key has a task running or waiting. */
  busy(key: string): boolean {
    return this.#active.has(key) || this.#queues.has(key);
  }

  /** Resolves when nothing is queued or running. */
  idle(): Promise<void> {
    if (this.#running === 0 && this.#queues.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  /** Removes every task that has not started and calls its abandon(). */
  abandonQueued(): number {
    let n = 0;
    for (const q of this.#queues.values()) {
      for (const t of q) {
        t.abandon();
        n++;
      }
    }
    this.#queues.clear();
    this.#ready = [];
    this.#head = 0;
    this.#checkIdle();
    return n;
  }

  #schedule(): void {
    while (this.#running < this.concurrency && this.#head < this.#ready.length) {
      const key = this.#ready[this.#head++] as string;
      if (this.#head === this.#ready.length) {
        this.#ready = [];
        this.#head = 0;
      } else if (this.#head >= 1024 && this.#head * 2 >= this.#ready.length) {
        this.#ready = this.#ready.slice(this.#head);
        this.#head = 0;
      }
      const q = this.#queues.get(key);
      const task = q?.shift();
      if (!task) continue;
      if (q && q.length === 0) this.#queues.delete(key);
      this.#active.add(key);
      this.#running++;
      void task
        .run()
        .catch(() => undefined) // tasks handle their own errors; a lane must never stall
        .finally(() => {
          this.#running--;
          this.#active.delete(key);
          if (this.#queues.has(key)) this.#ready.push(key);
          this.#schedule();
          this.#checkIdle();
        });
    }
  }

  #checkIdle(): void {
    if (this.#running === 0 && this.#queues.size === 0) {
      const w = this.#idleWaiters;
      this.#idleWaiters = [];
      w.forEach((f) => f());
    }
  }
}
