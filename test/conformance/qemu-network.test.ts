/**
 * Guest networking end to end, with real QEMU guests under TCG (or KVM):
 *  - user networking: the forwarded host port reaches this guest (it answers with its MAC),
 *    guestAddress gives SLIRP's address with that forward, and only once the guest has taken
 *    the address (a guest that never asks for one gets network::ip-discovery-timeout);
 *  - tap networking in a network namespace this test creates (a bridge and dnsmasq inside):
 *    QEMU runs in the namespace on its own tap, and guestAddress gives each of two VMs the
 *    address leased to its own MAC, which answers with that VM's MAC, never the other's.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { createConnection } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { execa } from "execa";
import type { VmHandle, VmSpec } from "../../src/contracts/index.js";
import { QemuBackend } from "../../src/hypervisor/backends/qemu/index.js";
import { isVmqError } from "../../src/lib/errors.js";
import {
  cleanupDataDir,
  GUEST_PORT,
  HELLO_MARKER,
  qemuTestGuest,
  type QemuGuestImages,
} from "../helpers/qemu-guest.js";
import { skipWhenMissing, type MissingInput } from "../helpers/required.js";

const spec = (imagePath: string, network: VmSpec["network"]): VmSpec => ({
  name: "net-test",
  imagePath,
  vcpus: 1,
  memoryMb: 128,
  network,
  uefi: false,
});
const id = (n: string): string => `${n}-${randomUUID().slice(0, 8)}`;
const STOP = { timeoutMs: 10_000, force: "after-timeout" } as const;

/** The first line a TCP peer sends (through `connect`), or "" when it closes without one. */
function firstLine(
  connect: () => ReturnType<typeof createConnection>,
  ms: number,
): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect();
    let buf = "";
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no line within ${ms} ms`));
    }, ms);
    s.setEncoding("utf8");
    s.on("data", (d: string) => {
      buf += d;
      if (buf.includes("\n")) {
        clearTimeout(timer);
        s.destroy();
        resolve(buf.split("\n")[0]!);
      }
    });
    s.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    s.on("close", () => {
      clearTimeout(timer);
      resolve(buf);
    });
  });
}

async function consoleHas(h: VmHandle, marker: RegExp, ms: number): Promise<string> {
  const end = Date.now() + ms;
  for (;;) {
    const log = await readFile(join(h.workDir, "console.log"), "utf8").catch(() => "");
    if (marker.test(log)) return log;
    if (Date.now() > end) throw new Error(`${h.id}: no ${marker} on the console:\n${log}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe("QEMU guest networking", { concurrency: true }, () => {
  let guest: QemuGuestImages | undefined;
  let missing: MissingInput | undefined;
  const cleanups: (() => Promise<void>)[] = [];
  before(async () => {
    const g = await qemuTestGuest();
    if ("unavailable" in g) missing = { ...g.unavailable, needed: "guest networking" };
    else guest = g;
  });
  after(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
  });

  it("user networking: the forwarded port reaches the guest, and guestAddress answers only once it has its address", async (t) => {
    if (skipWhenMissing(t, missing) || !guest) return;
    const dataDir = await mkdtemp(join(tmpdir(), "vmq-qemu-usernet-"));
    const b = new QemuBackend({ dataDir, imageRoots: [guest.dir], ipTimeoutMs: 120_000 });
    cleanups.push(async () => {
      await b.close();
      await cleanupDataDir(dataDir);
    });
    const up = await b.start(await b.prepare(id("user"), spec(guest.image, { type: "user" })));
    // Never asks for an address: the forward is accepted by QEMU, but nothing answers.
    const quiet = new QemuBackend({ dataDir, imageRoots: [guest.dir], ipTimeoutMs: 4000 });
    cleanups.push(() => quiet.close());
    const mute = await quiet.start(
      await quiet.prepare(id("nodhcp"), spec(guest.noDhcpImage, { type: "user" })),
    );

    const addr = await b.guestAddress(up);
    assert.equal(addr.ip, "10.0.2.15", "SLIRP's guest address, not the host's");
    assert.deepEqual(addr.forwards, [
      { protocol: "tcp", hostAddr: "127.0.0.1", hostPort: up.sshHostPort, guestPort: GUEST_PORT },
    ]);
    assert.equal(await b.guestIp(up), "10.0.2.15");
    const fwd = addr.forwards[0]!;
    const line = await firstLine(() => createConnection(fwd.hostPort, fwd.hostAddr), 20_000);
    assert.equal(line, `${HELLO_MARKER} ${up.macAddr}`, "the forward reaches this very guest");
    const log = await consoleHas(up, /VMQ-GUEST-IP 10\.0\.2\.15/, 5000);
    assert.doesNotMatch(log, /INSMOD-FAILED|NO-NIC/);

    await consoleHas(mute, /VMQ-GUEST-NO-DHCP/, 120_000);
    await assert.rejects(quiet.guestAddress(mute), (e) => {
      assert.ok(isVmqError(e), String(e));
      assert.equal(e.code, "network::ip-discovery-timeout", e.message);
      assert.match(e.message, new RegExp(`host port ${mute.sshHostPort}`));
      return true;
    });

    await b.stop(up, STOP);
    await assert.rejects(b.guestAddress(up), (e) => isVmqError(e, "hypervisor::invalid-state"));
    await quiet.stop(mute, { ...STOP, force: "now" });
  });

  it("tap networking in a network namespace: each of two VMs gets its own leased address, by its MAC", async (t) => {
    if (skipWhenMissing(t, missing) || !guest) return;
    if (skipWhenMissing(t, await netnsMissing())) return;
    const ns = `vmqt${randomUUID().slice(0, 8)}`;
    const work = await mkdtemp(join(tmpdir(), "vmq-qemu-tapnet-"));
    const leases = join(work, "dnsmasq.leases");
    const ip = (...args: string[]) => execa("ip", ["-n", ns, ...args]);
    await execa("ip", ["netns", "add", ns]);
    cleanups.push(async () => {
      await execa("ip", ["netns", "del", ns], { reject: false });
      await rm(work, { recursive: true, force: true });
    });
    await ip("link", "set", "lo", "up");
    await ip("link", "add", "vmqbr0", "type", "bridge");
    await ip("addr", "add", "10.77.0.1/24", "dev", "vmqbr0");
    await ip("link", "set", "vmqbr0", "up");
    const dnsmasq = execa(
      "ip",
      [
        ...["netns", "exec", ns, "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null"],
        ...["--port=0", "--interface=vmqbr0", "--bind-interfaces", "--user=root"],
        ...["--dhcp-range=10.77.0.50,10.77.0.99,255.255.255.0,1h", `--dhcp-leasefile=${leases}`],
        ...[`--pid-file=${join(work, "dnsmasq.pid")}`, "--log-facility=-"],
      ],
      { reject: false, stdin: "ignore" },
    );
    cleanups.push(async () => {
      dnsmasq.kill("SIGTERM");
      await dnsmasq;
    });

    const dataDir = join(work, "qemu");
    const b = new QemuBackend({
      dataDir,
      imageRoots: [guest.dir],
      tap: "direct",
      netns: ns,
      leaseFiles: [leases],
      ipTimeoutMs: 120_000,
    });
    cleanups.push(async () => {
      await b.close();
      await cleanupDataDir(dataDir);
    });
    const net = { type: "tap", bridge: "vmqbr0" } as const;
    const [x, y] = await Promise.all(
      ["tap-a", "tap-b"].map(async (n) => b.start(await b.prepare(id(n), spec(guest!.image, net)))),
    );
    assert.ok(x && y);
    assert.notEqual(x.macAddr, y.macAddr);
    const [ax, ay] = await Promise.all([b.guestAddress(x), b.guestAddress(y)]);
    assert.notEqual(ax.ip, ay.ip, "two VMs, two addresses");
    assert.equal(ax.forwards, undefined, "a bridged guest is reached at its own address");
    // dnsmasq may write its lease file a moment after the guest uses the address (the address
    // is found in the bridge's neighbour table first): read it until the lease shows, or 10 s.
    const leased = async (mac: string | undefined, ip: string): Promise<boolean> => {
      for (let i = 0; i < 100; i++) {
        const text = await readFile(leases, "utf8").catch(() => "");
        if (text.includes(`${mac} ${ip} `)) return true;
        await new Promise((r) => setTimeout(r, 100));
      }
      return false;
    };
    for (const [h, a] of [
      [x, ax],
      [y, ay],
    ] as const) {
      assert.match(a.ip, /^10\.77\.0\.\d+$/);
      assert.ok(await leased(h.macAddr, a.ip), `dnsmasq leased ${a.ip} to ${h.macAddr}`);
      // From inside the namespace, the address answers with this VM's own MAC.
      const r = await execa("ip", [
        ...["netns", "exec", ns, "busybox", "nc", "-w", "10", a.ip, String(GUEST_PORT)],
      ]);
      assert.equal(r.stdout.trim(), `${HELLO_MARKER} ${h.macAddr}`);
      await consoleHas(h, new RegExp(`VMQ-GUEST-IP ${a.ip.replaceAll(".", "\\.")}`), 5000);
    }
    await Promise.all([b.stop(x, STOP), b.stop(y, STOP)]);
    const links = await ip("-br", "link");
    assert.doesNotMatch(links.stdout, /vmq[0-9a-f]{12}/, "the taps went away with QEMU");
  });
});

/** Root, `ip netns`, dnsmasq and /dev/net/tun, or what is missing. */
async function netnsMissing(): Promise<MissingInput | undefined> {
  const needed = "tap networking in a network namespace";
  if (process.getuid?.() !== 0) {
    return { missing: "not root", needed, fix: "run the tests as root (network namespaces, taps)" };
  }
  if (!existsSync("/dev/net/tun")) {
    return { missing: "no /dev/net/tun", needed, fix: "load the tun module (modprobe tun)" };
  }
  for (const tool of ["ip", "dnsmasq", "busybox"]) {
    const r = await execa("which", [tool], { reject: false });
    if (r.exitCode !== 0) {
      return {
        missing: `no ${tool} for the network namespace test`,
        needed,
        fix: "run ./setup.sh, which installs iproute2 dnsmasq-base busybox-static",
      };
    }
  }
  const probe = `vmqp${randomUUID().slice(0, 8)}`;
  const r = await execa("ip", ["netns", "add", probe], { reject: false });
  if (r.exitCode !== 0) {
    return {
      missing: "network namespaces unavailable",
      needed,
      fix: `ip netns add failed: ${r.stderr.trim()}`,
    };
  }
  await execa("ip", ["netns", "del", probe], { reject: false });
  return undefined;
}
