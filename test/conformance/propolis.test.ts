import { randomUUID } from "node:crypto";
import type { VmSpec } from "../../src/contracts/index.js";
import { makePropolisFixture } from "../helpers/fake-propolis/propolis-fixture.js";
import { hypervisorConformance } from "./hypervisor.conformance.js";

const spec: VmSpec = {
  name: "conf",
  imagePath: "base",
  vcpus: 1,
  memoryMb: 256,
  network: { type: "none" },
  uefi: false,
  cloudInit: { userData: "#cloud-config\n", hostname: "conf" },
};

hypervisorConformance("propolis (fake server and zones)", async () => {
  const fx = await makePropolisFixture();
  return {
    backend: fx.backend,
    spec,
    // Propolis's Stop is a hard halt of the VMM ("not a graceful shutdown"): the guest is never
    // asked, so it is recorded as forced, never acpi or sigterm.
    gracefulHow: "forced",
    // A server wedged in Stopping never finishes the Stop: the zone is halted (sigkill).
    stubborn: {
      spec,
      setup: (vmId) => fx.onFake.set(vmId, (f) => f.wedgeIn("Stopping")),
      how: "sigkill",
    },
    // In-guest power-off: the fake server runs Stopping, Stopped, Destroyed on its own.
    outside: {
      change: (vm) => fx.fakes.get(vm.id)?.guestHalt(),
      expect: { state: "stopped", source: "propolis", guestInitiated: true },
    },
    vmId: (n) => `${n}-${randomUUID().slice(0, 8)}`,
    cleanup: fx.cleanup,
  };
});
