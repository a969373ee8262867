import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import {
  buildQemuArgs,
  qemuOptValue,
  qmpChardevArg,
  type QemuLaunchConfig,
} from "../../../src/hypervisor/backends/qemu/qemu-command-line.js";
import {
  ipArgs,
  qemuInvocation,
  tapNameFor,
} from "../../../src/hypervisor/backends/qemu/qemu-network.js";
import { isVmqError } from "../../../src/lib/errors.js";

const base = (over: Partial<QemuLaunchConfig> = {}): QemuLaunchConfig => ({
  vmId: "vm-1",
  accelerator: "tcg",
  cpuModel: "max",
  machine: "q35",
  vcpus: 2,
  memoryMb: 512,
  overlayPath: "/data/vm-1/overlay.qcow2",
  qmpSocket: "/data/vm-1/qmp.sock",
  consoleSocket: "/data/vm-1/console.sock",
  consoleLog: "/data/vm-1/console.log",
  pidFile: "/data/vm-1/qemu.pid",
  network: { type: "user" },
  macAddr: "52:54:00:aa:bb:cc",
  sshHostPort: 2222,
  vnc: false,
  ...over,
});

/**
 * A `key=value,...` option as QEMU's QemuOpts reads it: a value runs to the next single comma,
 * and two commas stand for one. A leading bare word (`socket`, `q35`) has an empty value.
 */
function parseOpts(s: string): Map<string, string> {
  const out = new Map<string, string>();
  let i = 0;
  while (i < s.length) {
    let name = "";
    while (i < s.length && s[i] !== "=" && s[i] !== ",") name += s[i++];
    let value = "";
    if (s[i] === "=") {
      i++;
      while (i < s.length) {
        if (s[i] === ",") {
          if (s[i + 1] !== ",") break;
          i++;
        }
        value += s[i++];
      }
    }
    assert.ok(!out.has(name), `option ${name} given twice in ${s}`);
    out.set(name, value);
    if (s[i] === ",") i++;
  }
  return out;
}

/** The value following `flag` each time it appears. */
const values = (args: string[], flag: string): string[] =>
  args.flatMap((a, i) => (a === flag ? [args[i + 1] ?? ""] : []));

describe("QEMU command line", () => {
  it("doubles commas in every path put into option syntax, and only there", () => {
    assert.equal(qemuOptValue("/a,b/c,,d"), "/a,,b/c,,,,d");
    const args = buildQemuArgs(
      base({
        overlayPath: "/da,ta/overlay.qcow2",
        qmpSocket: "/da,ta/qmp.sock",
        consoleSocket: "/da,ta/console.sock",
        consoleLog: "/da,ta/console.log",
        seedIsoPath: "/da,ta/seed.iso",
        pidFile: "/da,ta/qemu.pid",
      }),
    );
    const drives = values(args, "-drive");
    assert.ok(
      drives.includes("file=/da,,ta/overlay.qcow2,format=qcow2,if=none,id=drive0,discard=unmap"),
    );
    assert.ok(
      drives.some(
        (d) => d.startsWith("file=/da,,ta/seed.iso,format=raw") && d.includes("readonly=on"),
      ),
    );
    const chardevs = values(args, "-chardev");
    assert.ok(chardevs.includes("socket,id=qmp,path=/da,,ta/qmp.sock,server=on,wait=off"));
    assert.ok(
      chardevs.some(
        (c) =>
          c.includes("path=/da,,ta/console.sock,") && c.includes("logfile=/da,,ta/console.log"),
      ),
    );
    // -pidfile takes one literal path: doubling would name another file.
    assert.deepEqual(values(args, "-pidfile"), ["/da,ta/qemu.pid"]);
    // No unescaped single comma survives inside a path value of a key=value list.
    assert.ok(!args.some((a) => a.includes("=/da,ta")));
  });

  it("refuses control characters in paths, and a pid file that is not absolute", () => {
    for (const over of [
      { overlayPath: "/x\n-y" },
      { pidFile: "/x\r.pid" },
      { pidFile: "/x\0.pid" },
      { pidFile: "-daemonize" },
      { pidFile: "rel/qemu.pid" },
    ])
      assert.throws(
        () => buildQemuArgs(base(over)),
        (e: unknown) => isVmqError(e, "hypervisor::invalid-path"),
        JSON.stringify(over),
      );
  });

  it("any path (commas, spaces, quotes, unicode) reads back as itself, as QEMU parses each option", () => {
    const segment = fc
      .string({ unit: "grapheme", minLength: 1, maxLength: 12 })
      .map((x) => x.replace(/[\0\n\r/]/g, "_"))
      .filter((x) => x !== "." && x !== "..");
    const tricky = fc.constantFrom(
      "a,b",
      "a,,b",
      ",",
      "a b",
      "'q'",
      '"q"',
      "é,ü",
      "日本,語",
      "=",
      "x=y,z",
    );
    const dir = fc
      .array(fc.oneof(segment, tricky), { minLength: 1, maxLength: 4 })
      .map((parts) => `/${parts.join("/")}`);
    fc.assert(
      fc.property(dir, (d) => {
        const p = {
          overlayPath: `${d}/overlay.qcow2`,
          seedIsoPath: `${d}/seed.iso`,
          qmpSocket: `${d}/qmp.sock`,
          consoleSocket: `${d}/console.sock`,
          consoleLog: `${d}/console.log`,
          pidFile: `${d}/qemu.pid`,
          uefi: { code: `${d}/code.fd`, vars: `${d}/vars.fd` },
        };
        const args = buildQemuArgs(base(p));
        const drives = values(args, "-drive").map(parseOpts);
        const files = drives.map((o) => o.get("file"));
        assert.deepEqual(files, [p.uefi.code, p.uefi.vars, p.overlayPath, p.seedIsoPath]);
        const [qmp, serial] = values(args, "-chardev").map(parseOpts);
        assert.equal(qmp?.get("path"), p.qmpSocket);
        assert.equal(qmp?.get("server"), "on");
        assert.equal(serial?.get("path"), p.consoleSocket);
        assert.equal(serial?.get("logfile"), p.consoleLog);
        assert.equal(serial?.get("logappend"), "on", "nothing after the path was swallowed");
        assert.deepEqual(values(args, "-pidfile"), [p.pidFile]);
        assert.equal(qmpChardevArg(p.qmpSocket), values(args, "-chardev")[0]);
      }),
    );
  });

  it("has the fixed safety options and no shell-level strings", () => {
    const args = buildQemuArgs(base());
    for (const f of ["-nodefaults", "-no-user-config", "-daemonize"])
      assert.ok(args.includes(f), f);
    assert.deepEqual(values(args, "-display"), ["none"]);
    assert.deepEqual(values(args, "-mon"), ["chardev=qmp,mode=control"]);
    assert.deepEqual(values(args, "-serial"), ["chardev:serial0"]);
    assert.deepEqual(values(args, "-smp"), ["2"]);
    assert.deepEqual(values(args, "-m"), ["512M"]);
    assert.ok(!args.includes("-vnc"), "VNC is off unless asked for");
    assert.ok(!args.includes("-no-shutdown"), "QEMU exits when the guest powers off");
    assert.equal(qmpChardevArg("/data/vm-1/qmp.sock"), values(args, "-chardev")[0]);
  });

  it("puts the accelerator and cpu model in, never -cpu host by default", () => {
    const tcg = buildQemuArgs(base());
    assert.deepEqual(values(tcg, "-machine"), ["q35,accel=tcg"]);
    assert.deepEqual(values(tcg, "-cpu"), ["max"]);
    const kvm = buildQemuArgs(base({ accelerator: "kvm", cpuModel: "kvm64", machine: "pc" }));
    assert.deepEqual(values(kvm, "-machine"), ["pc,accel=kvm"]);
    assert.deepEqual(values(kvm, "-cpu"), ["kvm64"]);
    assert.ok(!kvm.includes("-enable-kvm"));
    assert.throws(() => buildQemuArgs(base({ cpuModel: "max,+evil" })));
    assert.throws(() => buildQemuArgs(base({ machine: "q35 -x" })));
  });

  it("builds user networking with SSH forwarded on 127.0.0.1 only", () => {
    const args = buildQemuArgs(base());
    assert.deepEqual(values(args, "-netdev"), ["user,id=net0,hostfwd=tcp:127.0.0.1:2222-:22"]);
    assert.ok(values(args, "-device").includes("virtio-net-pci,netdev=net0,mac=52:54:00:aa:bb:cc"));
  });

  it("builds tap networking through -netdev bridge (qemu-bridge-helper), not tap,br=", () => {
    const args = buildQemuArgs(base({ network: { type: "tap", bridge: "br0" } }));
    assert.deepEqual(values(args, "-netdev"), ["bridge,id=net0,br=br0"]);
    assert.ok(!args.some((a) => a.includes("script=no")));
    assert.ok(values(args, "-device").includes("virtio-net-pci,netdev=net0,mac=52:54:00:aa:bb:cc"));
  });

  it("builds direct tap networking: QEMU opens the named tap, no scripts, no bridge helper", () => {
    const tap = tapNameFor("/data", "vm-1");
    assert.match(tap, /^vmq[0-9a-f]{12}$/, "15 characters at most (IFNAMSIZ)");
    assert.notEqual(tap, tapNameFor("/other-data", "vm-1"), "two workers' VMs of one id differ");
    const args = buildQemuArgs(base({ network: { type: "tap", bridge: "br0" }, tapDevice: tap }));
    assert.deepEqual(values(args, "-netdev"), [
      `tap,id=net0,ifname=${tap},script=no,downscript=no`,
    ]);
    assert.throws(() =>
      buildQemuArgs(base({ network: { type: "tap", bridge: "br0" }, tapDevice: "a,b" })),
    );
  });

  it("runs QEMU and ip inside a network namespace only when one is set", () => {
    assert.deepEqual(qemuInvocation("qemu", ["-m", "1"], undefined), {
      file: "qemu",
      args: ["-m", "1"],
    });
    assert.deepEqual(qemuInvocation("qemu", ["-m", "1"], "ns1"), {
      file: "ip",
      args: ["netns", "exec", "ns1", "qemu", "-m", "1"],
    });
    assert.deepEqual(ipArgs("ns1", ["neigh"]), ["-n", "ns1", "neigh"]);
    assert.deepEqual(ipArgs(undefined, ["neigh"]), ["neigh"]);
    assert.throws(
      () => qemuInvocation("qemu", [], "-ns"),
      (e: unknown) => isVmqError(e),
    );
    assert.throws(
      () => ipArgs("a b", []),
      (e: unknown) => isVmqError(e),
    );
  });

  it("adds no NIC for network none and refuses vnic", () => {
    const none = buildQemuArgs(base({ network: { type: "none" } }));
    assert.deepEqual(values(none, "-netdev"), []);
    assert.ok(!values(none, "-device").some((d) => d.startsWith("virtio-net")));
    assert.throws(
      () => buildQemuArgs(base({ network: { type: "vnic", name: "vnic0" } })),
      (e: unknown) => isVmqError(e, "hypervisor::unsupported"),
    );
    assert.throws(() => buildQemuArgs(base({ macAddr: "52:54:00:AA:BB:CC,x" })));
  });

  it("adds OVMF pflash drives for UEFI: code read-only, per-VM vars writable", () => {
    const args = buildQemuArgs(
      base({ uefi: { code: "/usr/share/OVMF/OVMF_CODE_4M.fd", vars: "/data/vm-1/OVMF_VARS.fd" } }),
    );
    const pflash = values(args, "-drive").filter((d) => d.startsWith("if=pflash"));
    assert.deepEqual(pflash, [
      "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd",
      "if=pflash,format=raw,unit=1,file=/data/vm-1/OVMF_VARS.fd",
    ]);
    assert.ok(!buildQemuArgs(base()).some((a) => a.includes("pflash")));
  });

  it("listens for VNC on 127.0.0.1 only when enabled", () => {
    assert.deepEqual(values(buildQemuArgs(base({ vnc: true })), "-vnc"), ["127.0.0.1:0,to=99"]);
  });
});
