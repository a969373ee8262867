import type { CommandRouter } from "../pipeline/pipeline-deps.js";

/** What the router needs of the lease: a cheap check, and a wait while fenced. */
export interface Fence {
  readonly fenced: boolean;
  wait(signal?: AbortSignal): Promise<void>;
}

/**
 * The pipeline's router behind the host lease: a call that changes a VM waits while the lease is
 * fenced (no renewal for TTL/2) and fails with `host::lease-lost` once another worker holds it.
 * The fast path is one property read; reads (`state`) are never fenced.
 */
export function fencedRouter(router: CommandRouter, fence: Fence): CommandRouter {
  const gated =
    <A extends unknown[], R>(
      call: (...args: A) => Promise<R>,
      signalOf: (...args: A) => AbortSignal | undefined,
    ) =>
    (...args: A): Promise<R> =>
      fence.fenced ? fence.wait(signalOf(...args)).then(() => call(...args)) : call(...args);
  return {
    prepare: gated(
      (vmId, spec, opts) => router.prepare(vmId, spec, opts),
      (_v, _s, o) => o?.signal,
    ),
    start: gated(
      (vm, opts) => router.start(vm, opts),
      (_v, o) => o?.signal,
    ),
    stop: gated(
      (vm, opts) => router.stop(vm, opts),
      (_v, o) => o.signal,
    ),
    suspend: gated(
      (vm, opts) => router.suspend(vm, opts),
      (_v, o) => o?.signal,
    ),
    resume: gated(
      (vm, opts) => router.resume(vm, opts),
      (_v, o) => o?.signal,
    ),
    destroy: gated(
      (vm, opts) => router.destroy(vm, opts),
      (_v, o) => o.signal,
    ),
    // Reads the disk only, but a fenced-out worker's bytes must not become the VM elsewhere.
    exportDisk: gated(
      (vm, opts) => router.exportDisk(vm, opts),
      (_v, o) => o?.signal,
    ),
    state: (vm, opts) => router.state(vm, opts),
    has: (tag) => router.has(tag),
    get tags() {
      return router.tags;
    },
    get defaultBackend() {
      return router.defaultBackend;
    },
    capabilities: () => router.capabilities(),
  };
}
