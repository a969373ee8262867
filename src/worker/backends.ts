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
import { imageCacheDir } from "./images/image-cache.js";

/** The router this worker offers, from --backend. */
export function buildRouter(config: ResolvedConfig, log: Logger): HypervisorRouter {
  const backends: Hypervisor[] = config.backends.map((tag) => {
    switch (tag) {
      case "noop":
        // Wrapped for --noop-latency-ms and the chaos tests' mid-backend failpoint.
        // Its VMs live under the data dir by default, so a restarted worker re-adopts them
        // (the quick start's promise); --noop-ephemeral keeps them in memory only.
        return new FaultyBackend(
          new NoopBackend(
            config.noop.ephemeral
              ? {}
              : { stateDir: resolve(config.noop.stateDir ?? resolve(config.dataDir, "noop")) },
          ),
          { latencyMs: config.noop.latencyMs },
        );
      case "qemu": {
        const { imageRoots, vnc, cpuModel, ...q } = config.qemu;
        const qemu = new QemuBackend({
          ...q,
          dataDir: resolve(config.dataDir, "qemu"),
          // The image cache is always a root: the cached file is the overlay's backing file.
          imageRoots: [...(imageRoots ?? []), imageCacheDir(config.dataDir)]
            .map((r) => resolve(r))
            .filter((r, i, all) => all.indexOf(r) === i),
          vnc: vnc === "on",
          logger: log.child({ backend: "qemu" }),
          ...(cpuModel ? { cpuModel } : {}),
        });
        log.info(
          { accelerator: qemu.accelerator, why: qemu.acceleratorReason },
          "qemu backend ready",
        );
        return qemu;
      }
      case "propolis": {
        const { workRoot, binDir, commandTimeoutMs, ...p } = config.propolis;
        // Unset options stay absent (exactOptionalPropertyTypes): the backend applies defaults.
        const given = Object.fromEntries(
          Object.entries(p).filter(([, v]) => v !== undefined),
        ) as Omit<typeof p, "addressRange" | "defaultRouter" | "controlLink" | "bootromPath"> &
          Partial<Record<"addressRange" | "defaultRouter" | "controlLink" | "bootromPath", string>>;
        return new PropolisBackend({
          ...given,
          workRoot: workRoot ?? resolve(config.dataDir, "propolis"),
          runnerOptions: { timeoutMs: commandTimeoutMs, ...(binDir ? { binDir } : {}) },
          hostLabel: config.host,
          onError: (e, vmId) => log.warn({ err: e, vmId }, "propolis monitor"),
        });
      }
      default: {
        const unknown: never = tag; // every BackendTag has a case above
        throw new VmqError("hypervisor::backend-unavailable", `unknown backend ${String(unknown)}`);
      }
    }
  });
  return new HypervisorRouter(backends, config.defaultBackend ?? config.backends[0]);
}
