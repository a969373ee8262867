import type { ResolvedConfig } from "../config/config.js";
import { HypervisorRouter, NoopBackend, type Hypervisor } from "../hypervisor/index.js";
import { VmqError } from "../lib/errors.js";

/** The router this worker offers, from --backend. */
export function buildRouter(config: ResolvedConfig): HypervisorRouter {
  const backends: Hypervisor[] = config.backends.map((tag) => {
    switch (tag) {
      case "noop":
        return new NoopBackend({
          latencyMs: config.noopLatencyMs,
          ...(config.noopStateDir ? { stateDir: config.noopStateDir } : {}),
        });
      default:
        throw new VmqError(
          "hypervisor::backend-unavailable",
          `backend ${tag} is not built into this worker yet`,
        );
    }
  });
  return new HypervisorRouter(backends, config.defaultBackend ?? config.backends[0]);
}
