/**
 * A PropolisBackend wired to the fake illumos tools and one fake propolis-server per VM, the
 * way a real host runs them (docs/propolis.md): the backend allocates each VM an address from
 * a range on its zone's control VNIC; the fake `zoneadm boot` checks what the brand needs (the
 * address attribute on one of the zone's own addresses, the bootrom through a mount, every VNIC)
 * and asks this fixture's launcher to run "propolis-server" listening on exactly that address;
 * `zoneadm halt` kills it. A worker that gets any of it wrong fails to boot or to connect.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import {
  PropolisBackend,
  type PropolisBackendOptions,
} from "../../../src/hypervisor/backends/propolis/index.js";
import { FAKE_CONTROL_LINK, FakeIllumos } from "../fake-illumos/fake-illumos.js";
import { FakePropolisServer, type FakePropolisOptions } from "./fake-propolis-server.js";

export interface PropolisFixture {
  backend: PropolisBackend;
  illumos: FakeIllumos;
  /** The VM's fake propolis-server, from its zone's first boot. */
  fakes: Map<string, FakePropolisServer>;
  /** Runs on the VM's fake when its zone first boots after prepare (before any ensure). */
  onFake: Map<string, (f: FakePropolisServer) => void>;
  /** The control address range given to the backend, and the servers' port. */
  range: { first: string; last: string; port: number };
  cleanup: () => Promise<void>;
}

/** A port free on every address (so on each 127.x address of the range too). */
async function freePort(): Promise<number> {
  const s = http.createServer();
  await new Promise<void>((r) => s.listen(0, "0.0.0.0", () => r()));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

const byte = () => 1 + Math.floor(Math.random() * 250);

export async function makePropolisFixture(
  opts: { backend?: Partial<PropolisBackendOptions>; fake?: FakePropolisOptions } = {},
): Promise<PropolisFixture> {
  const illumos = await FakeIllumos.create();
  const fakes = new Map<string, FakePropolisServer>();
  const byAddr = new Map<string, FakePropolisServer>();
  const onFake = new Map<string, (f: FakePropolisServer) => void>();
  // Linux routes all of 127/8 to loopback: a random /24 in it keeps parallel tests apart.
  const net = `127.${byte()}.${byte()}`;
  const range = { first: `${net}.10`, last: `${net}.200`, port: await freePort() };

  const launcher = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      void (async () => {
        const b = JSON.parse(Buffer.concat(chunks).toString("utf8")) as {
          addr?: string;
          host?: string;
          port?: number;
          vmId?: string;
          first?: boolean;
        };
        if (req.url === "/halt") {
          if (b.addr !== undefined) byAddr.get(b.addr)?.crash();
          res.end("ok");
          return;
        }
        let f = b.addr === undefined ? undefined : byAddr.get(b.addr);
        if (!f) {
          f = await FakePropolisServer.start({
            stepMs: 5,
            ...opts.fake,
            startDead: true,
            host: b.host ?? "",
            port: b.port ?? 0,
          });
          byAddr.set(f.addr, f);
        }
        f.boot(); // a fresh server process per zone boot
        if (b.vmId !== undefined) {
          fakes.set(b.vmId, f);
          if (b.first) onFake.get(b.vmId)?.(f);
        }
        res.end("ok");
      })().catch((e: unknown) => {
        res.statusCode = 500;
        res.end(`propolis-server did not start: ${String(e)}`);
      });
    });
  });
  await new Promise<void>((r) => launcher.listen(0, "127.0.0.1", () => r()));
  illumos.launcherUrl = `http://127.0.0.1:${(launcher.address() as AddressInfo).port}`;

  const backend = new PropolisBackend({
    runnerOptions: illumos.runnerOptions,
    workRoot: illumos.workRoot,
    addressRange: `${range.first}-${range.last}`,
    addressPrefix: 24,
    controlLink: FAKE_CONTROL_LINK,
    serverPort: range.port,
    bootromPath: illumos.bootromPath,
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
    range,
    cleanup: async () => {
      await backend.close();
      await Promise.all([...byAddr.values()].map((f) => f.close()));
      launcher.closeAllConnections();
      await new Promise<void>((r) => launcher.close(() => r()));
      await illumos.cleanup();
    },
  };
}
