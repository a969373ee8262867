import { randomUUID } from "node:crypto";
import { FaultyBackend, NoopBackend } from "../../src/hypervisor/index.js";
import { hypervisorConformance } from "./hypervisor.conformance.js";

const spec = {
  name: "conf",
  imagePath: "/images/base.qcow2",
  vcpus: 1,
  memoryMb: 256,
  network: { type: "user" as const },
  uefi: false,
};
const vmId = (n: string) => `${n}-${randomUUID().slice(0, 8)}`;

/** The Noop as the worker runs it: wrapped in fault injection (stubborn guests, vanishing VMs). */
hypervisorConformance("noop (in fault injection)", async () => {
  const backend = new FaultyBackend(new NoopBackend());
  await Promise.resolve();
  return {
    backend,
    spec,
    // A stubborn guest is stopped after the timeout as if by SIGTERM (faulty-backend.ts).
    stubborn: { spec, setup: (id) => backend.hangStop(true, id), how: "sigterm" },
    outside: {
      change: (vm) => backend.vanish(vm.id),
      expect: { state: "stopped", source: "process", guestInitiated: false },
    },
    vmId,
  };
});

hypervisorConformance("noop without suspend, with latency", async () => {
  const backend = new FaultyBackend(new NoopBackend({ suspend: false }), { latencyMs: 5 });
  await Promise.resolve();
  return {
    backend,
    spec,
    outside: {
      change: (vm) => backend.vanish(vm.id, "guest-poweroff"),
      expect: { state: "stopped", source: "process", guestInitiated: true },
    },
    vmId,
  };
});

hypervisorConformance("noop alone", async () => {
  await Promise.resolve();
  return { backend: new NoopBackend(), spec, vmId };
});
