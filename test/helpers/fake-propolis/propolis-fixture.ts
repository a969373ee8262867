/**
 * A PropolisBackend wired to the fake illumos tools and one fake propolis-server per VM: the
 * backend's address allocator starts a fake (as a dead process) on a free port; the fake
 * `zoneadm boot` of the VM's zone brings it up, `zoneadm halt` kills it.
 */
import {
  PropolisBackend,
  type PropolisBackendOptions,
} from "../../../src/hypervisor/backends/propolis/index.js";
import { FakeIllumos } from "../fake-illumos/fake-illumos.js";
import { FakePropolisServer, type FakePropolisOptions } from "./fake-propolis-server.js";

export interface PropolisFixture {
  backend: PropolisBackend;
  illumos: FakeIllumos;
  fakes: Map<string, FakePropolisServer>;
  /** Runs on the VM's fake as soon as prepare allocates it. */
  onFake: Map<string, (f: FakePropolisServer) => void>;
  cleanup: () => Promise<void>;
}

export async function makePropolisFixture(
  opts: { backend?: Partial<PropolisBackendOptions>; fake?: FakePropolisOptions } = {},
): Promise<PropolisFixture> {
  const illumos = await FakeIllumos.create();
  const fakes = new Map<string, FakePropolisServer>();
  const onFake = new Map<string, (f: FakePropolisServer) => void>();
  const backend = new PropolisBackend({
    runnerOptions: illumos.runnerOptions,
    workRoot: illumos.workRoot,
    allocateAddress: async (vmId) => {
      const f = await FakePropolisServer.start({ startDead: true, stepMs: 5, ...opts.fake });
      await fakes.get(vmId)?.close();
      fakes.set(vmId, f);
      onFake.get(vmId)?.(f);
      return f.addr;
    },
    // Generous: the fake zone tools are Node processes, slow to start on a loaded 2-core machine.
    readyTimeoutMs: 30_000,
    startTimeoutMs: 30_000,
    rundownTimeoutMs: 10_000,
    monitorBackoffBaseMs: 10,
    monitorBackoffCapMs: 200,
    ...opts.backend,
  });
  return {
    backend,
    illumos,
    fakes,
    onFake,
    cleanup: async () => {
      await backend.close();
      await Promise.all([...fakes.values()].map((f) => f.close()));
      await illumos.cleanup();
    },
  };
}
