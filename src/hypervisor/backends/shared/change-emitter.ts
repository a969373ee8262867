import type { ChangeListener, ObservedChange } from "../../hypervisor.js";

/**
 * The listeners of a backend's `watch`: a listener that throws is reported to `onError` and
 * does not keep the change from the others (nor break the backend's event loop).
 */
export class ChangeEmitter {
  readonly #listeners = new Set<ChangeListener>();
  readonly #onError: ((e: unknown, change: ObservedChange) => void) | undefined;

  constructor(onError?: (e: unknown, change: ObservedChange) => void) {
    this.#onError = onError;
  }

  /** Hypervisor.watch: subscribes; returns the unsubscribe function. */
  watch(listener: ChangeListener): () => void {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  emit(change: ObservedChange): void {
    for (const l of [...this.#listeners]) {
      try {
        l(change);
      } catch (e) {
        this.#onError?.(e, change);
      }
    }
  }

  get listening(): boolean {
    return this.#listeners.size > 0;
  }
}
