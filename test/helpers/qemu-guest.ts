/**
 * Builds the tiny QEMU test guest from Debian packages into test/.cache/qemu-guest/ and reuses
 * it when present: Debian's kernel (unpacked, not installed), a busybox-static initramfs whose
 * /init prints markers on ttyS0 and powers off on the ACPI power button, on a FAT superfloppy
 * booted by syslinux. Three disks differ only in the kernel command line:
 *  - disk.raw: powers off on the power button;
 *  - stubborn.raw: ignores the button (vmq.stubborn), to exercise stop escalation;
 *  - selfoff.raw: powers itself off a few seconds after boot (vmq.selfoff=N), for
 *    guest-initiated power-off observed through QMP;
 *  - nodhcp.raw: its NIC is up but it never takes an address (vmq.nodhcp), for guestIp.
 * Markers on the serial console: VMQ-GUEST-READY, VMQ-GUEST-IP <ip>, VMQ-GUEST-POWEROFF
 * (VMQ-GUEST-NO-NIC, VMQ-GUEST-INSMOD-FAILED <module> when something is wrong). With a NIC the
 * guest takes an address by DHCP and answers on TCP port 22 with `VMQ-GUEST-HELLO <its MAC>`.
 * Every external tool runs through execa with an argument array (no shell).
 */
import { existsSync } from "node:fs";
import {
  chmod,
  copyFile,
  readFile,
  mkdir,
  mkdtemp,
  readdir,
  rename,
  rm,
  rmdir,
  stat,
  writeFile,
} from "node:fs/promises";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { setTimeout as delay } from "node:timers/promises";
import { gzipSync } from "node:zlib";
import { execa } from "execa";
import type { MissingInput } from "./required.js";

export interface QemuGuestImages {
  /** Answers the ACPI power button. */
  image: string;
  /** Ignores the power button. */
  stubbornImage: string;
  /** Powers itself off SELFOFF_SECONDS after it is ready. */
  selfOffImage: string;
  /** Brings its NIC up and listens, but never asks for an address (vmq.nodhcp). */
  noDhcpImage: string;
  /** The folder holding the images (an image root for the backend). */
  dir: string;
}
/** Without QEMU or the guest tools: what is missing and how to fix it (see required.ts). */
export type QemuGuestResult = QemuGuestImages | { unavailable: Omit<MissingInput, "needed"> };

export const READY_MARKER = "VMQ-GUEST-READY";
export const SELFOFF_SECONDS = 2;

const HERE = dirname(fileURLToPath(import.meta.url));
export const GUEST_CACHE_DIR = resolve(HERE, "..", ".cache", "qemu-guest");
/** Bumped when the recipe changes, so an old cache is rebuilt. */
const RECIPE_VERSION = "4";

/** The guest's port 22: a listener that answers one line, `VMQ-GUEST-HELLO <eth0's MAC>`. */
export const GUEST_PORT = 22;
export const HELLO_MARKER = "VMQ-GUEST-HELLO";

// Loaded in dependency order (orderModules reads each .ko's `depends=`), whatever order here.
const MODULES = [
  "drivers/input/evdev",
  "drivers/acpi/button",
  "drivers/virtio/virtio",
  "drivers/virtio/virtio_ring",
  "drivers/virtio/virtio_pci_modern_dev",
  "drivers/virtio/virtio_pci_legacy_dev",
  "drivers/virtio/virtio_pci",
  "net/core/failover",
  "drivers/net/net_failover",
  "drivers/net/virtio_net",
];

const TOOLS = [
  "qemu-system-x86_64",
  "qemu-img",
  "apt-get",
  "apt-cache",
  "dpkg-deb",
  "tar",
  "cpio",
  "mkfs.vfat",
  "mcopy",
  "syslinux",
];

const log = (msg: string): void => {
  process.stderr.write(`[qemu-guest] ${msg}\n`);
};

let building: Promise<QemuGuestResult> | undefined;

/**
 * The test guest's disks, built on first use; `{ unavailable }` when QEMU or the guest tools
 * are not installed (tests pass it to skipWhenMissing: a failure under CI, else a skip). With
 * them installed, a build that fails rejects (the tests fail, never skip).
 */
export function qemuTestGuest(): Promise<QemuGuestResult> {
  building ??= build();
  return building;
}

async function build(): Promise<QemuGuestResult> {
  const missing = [];
  for (const t of TOOLS) if (!(await which(t))) missing.push(t);
  if (!existsSync("/bin/busybox")) missing.push("busybox (busybox-static)");
  if (missing.length > 0) {
    return {
      unavailable: {
        missing: `QEMU or the test guest's tools not installed: no ${missing.join(", ")}`,
        fix:
          "run ./setup.sh, which installs qemu-system-x86 qemu-utils busybox-static cpio " +
          "dosfstools mtools syslinux syslinux-common",
      },
    };
  }
  const dir = GUEST_CACHE_DIR;
  const result: QemuGuestImages = {
    image: join(dir, "disk.raw"),
    stubbornImage: join(dir, "stubborn.raw"),
    selfOffImage: join(dir, "selfoff.raw"),
    noDhcpImage: join(dir, "nodhcp.raw"),
    dir,
  };
  const stamp = join(dir, `recipe-${RECIPE_VERSION}`);
  if (existsSync(stamp)) return result;

  await mkdir(dir, { recursive: true });
  // Test files run in parallel processes: one builds, the others wait for the stamp.
  const lock = join(dir, ".lock");
  for (;;) {
    try {
      await mkdir(lock);
      break;
    } catch {
      if (existsSync(stamp)) return result;
      const age = Date.now() - (await stat(lock).catch(() => ({ mtimeMs: Date.now() }))).mtimeMs;
      if (age > 10 * 60_000) await rmdir(lock).catch(() => undefined);
      await delay(500);
    }
  }
  const work = await mkdtemp(join(dir, ".build-"));
  try {
    if (existsSync(stamp)) return result;
    log(`building the QEMU test guest in ${dir} (once; reused afterwards)`);
    const began = Date.now();
    const { vmlinuz, modules } = await fetchKernel(work);
    const initrd = await makeInitramfs(work, modules);
    const base = join(work, "base.raw");
    await execa("mkfs.vfat", ["-C", "-n", "VMQGUEST", base, "16384"]);
    await execa("mcopy", ["-i", base, vmlinuz, "::/vmlinuz"]);
    await execa("mcopy", ["-i", base, initrd, "::/initrd.gz"]);
    await execa("syslinux", ["--install", base]);
    const variants: [string, string][] = [
      [result.image, ""],
      [result.stubbornImage, "vmq.stubborn"],
      [result.selfOffImage, `vmq.selfoff=${SELFOFF_SECONDS}`],
      [result.noDhcpImage, "vmq.nodhcp"],
    ];
    for (const [target, flags] of variants) {
      const tmp = join(work, "variant.raw");
      const cfg = join(work, "syslinux.cfg");
      await copyFile(base, tmp);
      await writeFile(cfg, syslinuxCfg(flags));
      await execa("mcopy", ["-o", "-i", tmp, cfg, "::/syslinux.cfg"]);
      await rename(tmp, target);
    }
    await writeFile(stamp, new Date().toISOString());
    log(`test guest ready in ${((Date.now() - began) / 1000).toFixed(1)} s`);
    return result;
  } catch (e) {
    const msg = e instanceof Error ? e.message.split("\n")[0] : String(e);
    log(`building the test guest failed: ${msg}`);
    // QEMU and the guest tools are installed: a guest that cannot be built is a failure, not a
    // reason to skip (CI would pass without having run a single QEMU test).
    throw new Error(`the QEMU test guest could not be built although QEMU is installed: ${msg}`, {
      cause: e,
    });
  } finally {
    await rm(work, { recursive: true, force: true });
    await rmdir(lock).catch(() => undefined);
  }
}

function syslinuxCfg(flags: string): string {
  const cmdline = [
    "console=ttyS0,115200",
    "quiet",
    "panic=-1",
    "8250.nr_uarts=1",
    "mitigations=off",
    "init_on_alloc=0",
    flags,
  ]
    .filter(Boolean)
    .join(" ");
  return [
    "SERIAL 0 115200",
    "PROMPT 0",
    "TIMEOUT 0",
    "DEFAULT vmq",
    "LABEL vmq",
    "  KERNEL vmlinuz",
    "  INITRD initrd.gz",
    `  APPEND ${cmdline}`,
    "",
  ].join("\n");
}

async function which(tool: string): Promise<boolean> {
  for (const d of ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]) {
    if (existsSync(join(d, tool))) return true;
  }
  return Promise.resolve(false);
}

async function fetchKernel(work: string): Promise<{ vmlinuz: string; modules: string[] }> {
  const deps = await execa("apt-cache", ["depends", "linux-image-amd64"]);
  const pkg = /Depends:\s+(linux-image-[0-9][A-Za-z0-9.+-]*-amd64)\b/.exec(deps.stdout)?.[1];
  if (!pkg) throw new Error("cannot resolve the kernel package behind linux-image-amd64");
  log(`downloading ${pkg} (apt-get download)`);
  const download = () => execa("apt-get", ["download", pkg], { cwd: work, reject: false });
  let r = await download();
  if (r.exitCode !== 0) {
    log("apt-get download failed; running apt-get update once and retrying");
    await execa("apt-get", ["update", "-qq"]);
    r = await download();
    if (r.exitCode !== 0) throw new Error(`apt-get download ${pkg} failed: ${r.stderr}`);
  }
  const deb = (await readdir(work)).find((f) => f.startsWith(`${pkg}_`) && f.endsWith(".deb"));
  if (!deb) throw new Error(`apt-get download left no ${pkg} .deb`);
  const root = join(work, "kernel");
  await mkdir(root);
  const patterns = ["*/boot/vmlinuz-*", ...MODULES.map((m) => `*/kernel/${m}.ko*`)];
  // The archive streams straight into tar (buffer: false: it is ~400 MB unpacked).
  await execa("dpkg-deb", ["--fsys-tarfile", join(work, deb)], { buffer: false }).pipe("tar", [
    "-x",
    "-f",
    "-",
    "-C",
    root,
    "--wildcards",
    ...patterns,
  ]);
  await rm(join(work, deb));
  const files = await walk(root);
  const vmlinuz = files.find((f) => /\/boot\/vmlinuz-[^/]+$/.test(f));
  if (!vmlinuz) throw new Error(`${pkg} holds no boot/vmlinuz-*`);
  const modules: string[] = [];
  for (const m of MODULES) {
    const f = files.find((p) => p.includes(`/kernel/${m}.ko`));
    if (!f) throw new Error(`${pkg} holds no ${m}.ko`);
    modules.push(await decompressModule(f));
  }
  return { vmlinuz, modules: await orderModules(modules) };
}

/** A module's name as the kernel knows it (dashes are underscores). */
const moduleName = (path: string): string =>
  path.split("/").pop()!.replace(/\.ko$/, "").replaceAll("-", "_");

/**
 * The modules sorted so each comes after what it depends on (the `depends=` string of its
 * .modinfo section; busybox insmod does not resolve dependencies, and a wrong order leaves the
 * guest without a NIC). A dependency outside the list must be built into the kernel.
 */
export async function orderModules(paths: string[]): Promise<string[]> {
  const deps = new Map<string, string[]>();
  const byName = new Map(paths.map((p) => [moduleName(p), p]));
  for (const [name, p] of byName) {
    const text = (await readFile(p)).toString("latin1");
    const d = /\0depends=([^\0]*)\0/.exec(text)?.[1] ?? "";
    deps.set(
      name,
      d.split(",").filter((x) => byName.has(x)),
    );
  }
  const out: string[] = [];
  const seen = new Set<string>();
  const visit = (name: string, path: string[]): void => {
    if (seen.has(name)) return;
    if (path.includes(name))
      throw new Error(`module dependency cycle: ${[...path, name].join(" -> ")}`);
    for (const d of deps.get(name) ?? []) visit(d, [...path, name]);
    seen.add(name);
    out.push(byName.get(name)!);
  };
  for (const name of byName.keys()) visit(name, []);
  return out;
}

/** busybox insmod may not read compressed modules: unpack .ko.xz/.ko.gz/.ko.zst first. */
async function decompressModule(path: string): Promise<string> {
  if (path.endsWith(".ko")) return path;
  const tool = path.endsWith(".xz") ? "xz" : path.endsWith(".gz") ? "gzip" : "zstd";
  if (!(await which(tool))) throw new Error(`${tool} is needed to unpack ${path}`);
  await execa(tool, ["-d", "-f", path]);
  return path.replace(/\.(xz|gz|zst)$/, "");
}

async function walk(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await walk(p)));
    else out.push(p);
  }
  return out;
}

const INIT = `#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
exec </dev/ttyS0 >/dev/ttyS0 2>&1
arg() { for a in $(cat /proc/cmdline); do case "$a" in "$1"=*) echo "\${a#*=}";; "$1") echo yes;; esac; done; }
for m in MODULE_LIST; do insmod /lib/modules/$m.ko >/dev/null 2>&1 || echo "VMQ-GUEST-INSMOD-FAILED $m"; done
mkfifo /tmp/power
n=0
while [ $n -lt 50 ]; do
  found=0
  for d in /sys/class/input/event*; do
    [ -e "$d/device/name" ] || continue
    if grep -q "Power Button" "$d/device/name"; then
      found=1
      (dd if=/dev/input/\${d##*/} bs=24 count=1 >/dev/null 2>&1; echo press >/tmp/power) &
    fi
  done
  [ $found = 1 ] && break
  n=$((n+1)); sleep 0.1
done
echo "VMQ-GUEST-READY"
if [ -e /sys/class/net/eth0 ]; then
  ip link set lo up
  ip link set eth0 up
  if [ "$(arg vmq.nodhcp)" = yes ]; then
    echo "VMQ-GUEST-NO-DHCP"
  else
    (udhcpc -i eth0 -q -n -t 5 -s /etc/udhcpc.script >/dev/null 2>&1) &
  fi
  nc -ll -p 22 -e /bin/hello >/dev/null 2>&1 &
else
  echo "VMQ-GUEST-NO-NIC"
fi
if [ "$(arg vmq.stubborn)" = yes ]; then
  echo "VMQ-GUEST-STUBBORN: ignoring the power button"
  while :; do sleep 3600; done
fi
after="$(arg vmq.selfoff)"
if [ -n "$after" ]; then
  sleep "$after"
  echo "VMQ-GUEST-POWEROFF (self)"
else
  # Opening the fifo is interrupted by SIGCHLD when a background job (udhcpc) ends: retry.
  until read press </tmp/power; do :; done 2>/dev/null
  echo "VMQ-GUEST-POWEROFF (button)"
fi
sync
poweroff -f
`;

const UDHCPC = `#!/bin/sh
if [ "$1" = bound ] || [ "$1" = renew ]; then
  ifconfig "$interface" "$ip" netmask "\${subnet:-255.255.255.0}"
  [ -n "$router" ] && route add default gw "\${router%% *}" dev "$interface"
  # udhcpc's own output goes to /dev/null: the marker goes to the console itself.
  echo "VMQ-GUEST-IP $ip" >/dev/ttyS0
fi
`;

const HELLO = `#!/bin/sh
echo "${HELLO_MARKER} $(cat /sys/class/net/eth0/address)"
`;

async function makeInitramfs(work: string, modules: string[]): Promise<string> {
  const root = join(work, "initramfs");
  for (const d of ["bin", "proc", "sys", "dev", "tmp", "etc", "lib/modules"]) {
    await mkdir(join(root, d), { recursive: true });
  }
  await copyFile("/bin/busybox", join(root, "bin/busybox"));
  await chmod(join(root, "bin/busybox"), 0o755);
  const names: string[] = [];
  for (const m of modules) {
    const name = m.split("/").pop()!.replace(/\.ko$/, "");
    names.push(name);
    await copyFile(m, join(root, "lib/modules", `${name}.ko`));
  }
  await writeFile(join(root, "init"), INIT.replace("MODULE_LIST", names.join(" ")), {
    mode: 0o755,
  });
  await writeFile(join(root, "etc/udhcpc.script"), UDHCPC, { mode: 0o755 });
  await writeFile(join(root, "bin/hello"), HELLO, { mode: 0o755 });
  // cpio reads the file list on stdin (no shell pipeline): relative paths, parents first.
  const list = [".", ...(await walkAll(root)).map((p) => relative(root, p))].join("\n") + "\n";
  const cpio = await execa("cpio", ["-o", "-H", "newc", "--quiet", "-R", "0:0"], {
    cwd: root,
    input: list,
    encoding: "buffer",
  });
  const out = join(work, "initrd.gz");
  await writeFile(out, gzipSync(cpio.stdout, { level: 9 }));
  return out;
}

async function walkAll(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    out.push(p);
    if (e.isDirectory()) out.push(...(await walkAll(p)));
  }
  return out;
}

/** Kills every QEMU still running under a test's dataDir (pid file + /proc proof), then removes it. */
export async function cleanupDataDir(dataDir: string): Promise<void> {
  const { vmPaths } = await import("../../src/hypervisor/backends/qemu/index.js");
  const { readPidFile, signalOurQemu, waitForExit } =
    await import("../../src/hypervisor/backends/qemu/process.js");
  // A backend's own data dir, or a worker's (whose QEMU VMs live under <data-dir>/qemu).
  const roots = [dataDir, join(dataDir, "qemu")];
  const vms = (
    await Promise.all(
      roots.map(async (r) =>
        (await readdir(r).catch(() => [] as string[])).map((id) => ({ root: r, id })),
      ),
    )
  ).flat();
  for (const { root, id } of vms) {
    let p;
    try {
      p = vmPaths(root, id);
    } catch {
      continue;
    }
    const pid = await readPidFile(p.pid);
    if (pid !== undefined && (await signalOurQemu(pid, p.qmp, "SIGKILL"))) {
      log(`killed a QEMU left running by a test: ${id} (pid ${pid})`);
      await waitForExit(pid, p.qmp, 5000);
    }
  }
  await rm(dataDir, { recursive: true, force: true });
}
