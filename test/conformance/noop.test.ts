import { randomUUID } from "node:crypto";
import { NoopBackend } from "../../src/hypervisor/index.js";
import { hypervisorConformance } from "./hypervisor.conformance.js";

const spec = {
  name: "conf",
  imagePath: "/images/base.qcow2",
  vcpus: 1,
  memoryMb: 256,
  network: { type: "user" as const },
  uefi: false,
};

hypervisorConformance("noop", async () => {
  const backend = new NoopBackend();
  await Promise.resolve();
  return {
    backend,
    spec,
    // Noop's stubborn guest is stopped after the timeout as if by SIGTERM (noop-backend.ts).
    stubborn: { spec, setup: (id) => backend.hangStop(true, id), how: "sigterm" },
    vmId: (n) => `${n}-${randomUUID().slice(0, 8)}`,
  };
});

hypervisorConformance("noop without suspend, with latency", async () => {
  await Promise.resolve();
  return {
    backend: new NoopBackend({ suspend: false, latencyMs: 5 }),
    spec,
    vmId: (n) => `${n}-${randomUUID().slice(0, 8)}`,
  };
});
