/**
 * Files of a VM's work dir: path confinement, the qcow2 overlay (qemu-img), the NoCloud seed
 * ISO, the MAC address and the SSH forwarding port. Tools run through execa with argument
 * arrays; cloud-init user-data is written to a file and never logged.
 */
import { createHash } from "node:crypto";
import { mkdir, realpath, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { basename, isAbsolute, join, relative, resolve, sep } from "node:path";
import { execa } from "execa";
import type { CloudInit } from "../../../contracts/index.js";
import { plainUserData } from "../shared/user-data.js";
import { HypervisorError } from "../../errors.js";

/** `child` is `root` or lies below it (both already resolved). */
export function isInside(root: string, child: string): boolean {
  const rel = relative(root, child);
  return rel === "" || (!rel.startsWith("..") && !isAbsolute(rel) && !rel.startsWith(`..${sep}`));
}

/** The VM's work dir, proven to be a direct child of dataDir. */
export function workDirFor(dataDir: string, vmId: string): string {
  const root = resolve(dataDir);
  const dir = resolve(root, vmId);
  if (
    !/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(vmId) ||
    vmId.includes("..") ||
    resolve(dir, "..") !== root
  ) {
    throw new HypervisorError(
      "hypervisor::invalid-path",
      `vmId ${JSON.stringify(vmId)} is not a safe directory name`,
      {
        hint: "vmIds are validated by the contracts; this one would leave the data dir.",
      },
    );
  }
  return dir;
}

const invalidPath = (msg: string): HypervisorError =>
  new HypervisorError("hypervisor::invalid-path", msg, {
    hint: "Image paths must resolve inside the configured image roots (no .., no symlinks out).",
  });

/**
 * Resolves a spec's imagePath inside one of the image roots: relative paths are taken from
 * the first root; `..` segments are refused outright; symlinks are followed (realpath) and
 * the target must still lie in a root.
 */
export async function resolveImagePath(
  imagePath: string,
  imageRoots: readonly string[],
): Promise<string> {
  if (imageRoots.length === 0) throw invalidPath("no image roots are configured");
  if (imagePath.includes("\0")) throw invalidPath("the image path holds a NUL character");
  if (imagePath.split(/[\\/]/).includes(".."))
    throw invalidPath(`image path ${imagePath} contains ..`);
  const roots: string[] = [];
  for (const r of imageRoots) roots.push(await realpath(resolve(r)).catch(() => resolve(r)));
  const candidate = isAbsolute(imagePath) ? resolve(imagePath) : resolve(roots[0]!, imagePath);
  const lexicalRoot = imageRoots.map((r) => resolve(r)).concat(roots);
  if (!lexicalRoot.some((r) => isInside(r, candidate))) {
    throw invalidPath(`image path ${imagePath} is outside the image roots`);
  }
  let real: string;
  try {
    real = await realpath(candidate);
  } catch (e) {
    throw new HypervisorError("image::not-found", `image ${imagePath} does not exist`, {
      hint: "Put the base image inside an image root and check the spec's imagePath.",
      cause: e,
    });
  }
  if (!roots.some((r) => isInside(r, real))) {
    throw invalidPath(`image path ${imagePath} leads outside the image roots (symlink)`);
  }
  return real;
}

/** The base image's format as qemu-img sees it (raw, qcow2, ...). */
export async function detectImageFormat(
  qemuImg: string,
  image: string,
  signal?: AbortSignal,
): Promise<string> {
  const r = await execa(qemuImg, ["info", "--output=json", "-U", image], {
    reject: false,
    ...(signal ? { cancelSignal: signal } : {}),
  });
  if (r.exitCode !== 0) {
    throw new HypervisorError(
      "image::overlay-failed",
      `qemu-img info ${image} failed: ${r.stderr.trim()}`,
      {
        hint: "Check the base image is a disk image QEMU can read (install qemu-utils).",
        ...(r.failed && r.exitCode === undefined ? { cause: r } : {}),
      },
    );
  }
  const info = JSON.parse(r.stdout) as { format?: unknown };
  if (typeof info.format !== "string" || !/^[a-z0-9]+$/.test(info.format)) {
    throw new HypervisorError(
      "image::overlay-failed",
      `qemu-img could not tell the format of ${image}`,
    );
  }
  return info.format;
}

/** A qcow2 overlay backed by the base image, grown to diskGb when given. */
export async function createOverlay(
  qemuImg: string,
  base: string,
  overlay: string,
  diskGb: number | undefined,
  signal?: AbortSignal,
): Promise<void> {
  const format = await detectImageFormat(qemuImg, base, signal);
  const args = ["create", "-q", "-f", "qcow2", "-F", format, "-b", base, overlay];
  if (diskGb !== undefined) args.push(`${diskGb}G`);
  const r = await execa(qemuImg, args, {
    reject: false,
    ...(signal ? { cancelSignal: signal } : {}),
  });
  if (r.exitCode !== 0) {
    throw new HypervisorError(
      "image::overlay-failed",
      `qemu-img create failed: ${r.stderr.trim() || (r.message ?? "")}`,
      {
        hint: "Install qemu-utils; diskGb must not be smaller than the base image.",
      },
    );
  }
}

/**
 * The NoCloud seed ISO (volume id cidata) with user-data and meta-data. The files are written
 * inside the work dir (0600) and only their paths reach the tool's argv.
 */
export async function createSeedIso(
  isoTool: string,
  workDir: string,
  iso: string,
  ci: CloudInit,
  vmId: string,
  name: string,
  signal?: AbortSignal,
): Promise<void> {
  const src = join(workDir, "cidata");
  await mkdir(src, { mode: 0o700 });
  const hostname = ci.hostname ?? hostnameFrom(name, vmId);
  const meta = `instance-id: ${ci.instanceId ?? vmId}\nlocal-hostname: ${hostname}\n`;
  await writeFile(join(src, "user-data"), plainUserData(ci), { mode: 0o600 });
  await writeFile(join(src, "meta-data"), meta, { mode: 0o600 });
  const isoArgs = ["-output", iso, "-volid", "cidata", "-joliet", "-rock", "-quiet", src];
  const xorriso = basename(isoTool) === "xorriso";
  const args = xorriso ? ["-as", "mkisofs", ...isoArgs] : isoArgs;
  const r = await execa(isoTool, args, {
    reject: false,
    ...(signal ? { cancelSignal: signal } : {}),
  });
  if (r.exitCode !== 0) {
    // stderr of genisoimage names files, never their content.
    throw new HypervisorError(
      "cloudinit::iso-failed",
      `${isoTool} failed: ${(r.stderr || (r.message ?? "")).trim().split("\n")[0]}`,
      {
        hint: "Install genisoimage (or xorriso and set isoTool).",
      },
    );
  }
}

/** A DNS label from the VM's name, or its id when the name has none. */
function hostnameFrom(name: string, vmId: string): string {
  const h = name
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 63);
  return (
    h ||
    vmId
      .toLowerCase()
      .replace(/[^a-z0-9-]+/g, "-")
      .slice(0, 63) ||
    "vm"
  );
}

/** A stable MAC for the vmId: QEMU's 52:54:00 prefix (locally administered) + 3 hash bytes. */
export function macFor(vmId: string): string {
  const h = createHash("sha256").update(vmId).digest();
  const tail = [h[0]!, h[1]!, h[2]!].map((b) => b.toString(16).padStart(2, "0"));
  return ["52", "54", "00", ...tail].join(":");
}

/**
 * Ports this process handed out, one per VM: the OS may repeat a port once its probe is
 * closed, so two VMs must not be given the same one before QEMU binds it. A VM given a new
 * port lets go of its old one, and a destroyed VM of its own, so the map stays as large as
 * the VMs this process prepared and did not destroy.
 */
const portOwner = new Map<number, string>();
const portOf = new Map<string, number>();

/** A free TCP port on 127.0.0.1 for `vmId`, chosen by the OS; start checks it again. */
export async function freePort(vmId: string): Promise<number> {
  for (let i = 0; i < 20; i++) {
    const port = await new Promise<number>((res, rej) => {
      const srv = createServer();
      srv.unref();
      srv.on("error", rej);
      srv.listen(0, "127.0.0.1", () => {
        const addr = srv.address();
        srv.close(() =>
          typeof addr === "object" && addr ? res(addr.port) : rej(new Error("no port")),
        );
      });
    });
    const owner = portOwner.get(port);
    if (owner === undefined || owner === vmId) {
      releasePort(vmId);
      portOwner.set(port, vmId);
      portOf.set(vmId, port);
      return port;
    }
  }
  throw new HypervisorError("network::no-free-port", "no free port for SSH forwarding", {});
}

/** Lets go of the port handed out for `vmId` (its VM is destroyed, or its prepare failed). */
export function releasePort(vmId: string): void {
  const port = portOf.get(vmId);
  if (port === undefined) return;
  portOf.delete(vmId);
  portOwner.delete(port);
}

/** Ports handed out and not let go of (for tests). */
export function portsHeld(): number {
  return portOf.size;
}

/** The port held for `vmId`, if any (for tests that run VMs side by side). */
export function portHeldBy(vmId: string): number | undefined {
  return portOf.get(vmId);
}

/** Whether `port` can be bound on 127.0.0.1 now. */
export function portFree(port: number): Promise<boolean> {
  return new Promise((res) => {
    const srv = createServer();
    srv.unref();
    srv.once("error", () => res(false));
    srv.listen(port, "127.0.0.1", () => srv.close(() => res(true)));
  });
}
