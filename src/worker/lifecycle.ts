import type { WorkerState } from "../contracts/index.js";
import { VmqError } from "../lib/errors.js";

/** The worker's phases: `idle` until start() is called, then the public states. */
export type Phase = "idle" | WorkerState;

/** Every move the worker may make; anything else is a bug and is refused. */
export const PHASE_MOVES: Readonly<Record<Phase, readonly Phase[]>> = {
  idle: ["starting", "stopped"],
  starting: ["running", "draining", "failed"],
  running: ["draining"],
  draining: ["stopped"],
  failed: ["starting"],
  stopped: [],
};

type Listener = (state: WorkerState, previous: WorkerState) => void;

/** The worker's phase, its legal moves, and who is told of them. */
export class Lifecycle {
  #phase: Phase = "idle";
  readonly #listeners = new Set<Listener>();
  #ended!: () => void;
  /** Resolves once the worker has stopped or failed. */
  readonly ended = new Promise<void>((r) => (this.#ended = r));

  get phase(): Phase {
    return this.#phase;
  }
  /** The state others see: a worker not started yet says starting. */
  get state(): WorkerState {
    return this.#phase === "idle" ? "starting" : this.#phase;
  }

  can(to: Phase): boolean {
    return PHASE_MOVES[this.#phase].includes(to);
  }

  move(to: Phase): void {
    if (!this.can(to))
      throw new VmqError("internal::unexpected", `worker cannot move from ${this.#phase} to ${to}`);
    const previous = this.state;
    this.#phase = to;
    if (to === "stopped" || to === "failed") this.#ended();
    const now = this.state;
    if (now !== previous) for (const l of this.#listeners) l(now, previous);
  }

  onChange(listener: Listener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}
