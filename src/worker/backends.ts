import { resolve } from "node:path";
import type { ResolvedConfig } from "../config/config.js";
import {
  FaultyBackend,
  HypervisorRouter,
  NoopBackend,
  PropolisBackend,
  QemuBackend,
  type Hypervisor,
} from "../hypervisor/index.js";
import { VmqError } from "../lib/errors.js";
import type { Logger } from "../observability/logger.js";

/** The router this worker offers, from --backend. */
export function buildRouter(config: ResolvedConfig, log: Logger): HypervisorRouter {
  const backends: Hypervisor[] = config.backends.map((tag) => {
    switch (tag) {
      case "noop":
        // Wrapped for --noop-latency-ms and the chaos tests' mid-backend failpoint.
        return new FaultyBackend(
          new NoopBackend(config.noopStateDir ? { stateDir: config.noopStateDir } : {}),
          { latencyMs: config.noopLatencyMs },
        );
      case "qemu": {
        const qemu = new QemuBackend({
          dataDir: resolve(config.dataDir, "qemu"),
          imageRoots: (config.imageRoots ?? [resolve(config.dataDir, "images")]).map((r) =>
            resolve(r),
          ),
          accelerator: config.accelerator,
          vnc: config.vnc === "on",
          logger: log.child({ backend: "qemu" }),
          ...(config.cpuModel ? { cpuModel: config.cpuModel } : {}),
        });
        log.info(
          { accelerator: qemu.accelerator, why: qemu.acceleratorReason },
          "qemu backend ready",
        );
        return qemu;
      }
      case "propolis":
        return new PropolisBackend({
          vmsDataset: config.propolisVmsDataset,
          imagesDataset: config.propolisImagesDataset,
          basePort: config.propolisBasePort,
          workRoot: resolve(config.dataDir, "propolis"),
          hostLabel: config.host,
          onError: (e, vmId) => log.warn({ err: e, vmId }, "propolis monitor"),
        });
      default: {
        const unknown: never = tag; // every BackendTag has a case above
        throw new VmqError("hypervisor::backend-unavailable", `unknown backend ${String(unknown)}`);
      }
    }
  });
  return new HypervisorRouter(backends, config.defaultBackend ?? config.backends[0]);
}
