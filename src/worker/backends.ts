import { resolve } from "node:path";
import type { ResolvedConfig } from "../config/config.js";
import {
  HypervisorRouter,
  NoopBackend,
  PropolisBackend,
  type Hypervisor,
} from "../hypervisor/index.js";
import { VmqError } from "../lib/errors.js";
import type { Logger } from "../observability/logger.js";

/** The router this worker offers, from --backend. */
export function buildRouter(config: ResolvedConfig, log: Logger): HypervisorRouter {
  const backends: Hypervisor[] = config.backends.map((tag) => {
    switch (tag) {
      case "noop":
        return new NoopBackend({
          latencyMs: config.noopLatencyMs,
          ...(config.noopStateDir ? { stateDir: config.noopStateDir } : {}),
        });
      case "propolis":
        return new PropolisBackend({
          vmsDataset: config.propolisVmsDataset,
          imagesDataset: config.propolisImagesDataset,
          basePort: config.propolisBasePort,
          workRoot: resolve(config.dataDir, "propolis"),
          hostLabel: config.host,
          onError: (e, vmId) => log.warn({ err: e, vmId }, "propolis monitor"),
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
