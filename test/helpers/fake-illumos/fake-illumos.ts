/** Test-side handle on the fake illumos tools: a temp state dir, faults, and introspection. */
import { mkdtemp, mkdir, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const FAKE_BIN_DIR = join(dirname(fileURLToPath(import.meta.url)), "bin");

export interface FakeFault {
  tool: "zfs" | "zonecfg" | "zoneadm" | "zlogin" | "dladm" | "mkisofs";
  /** zfs: clone|destroy|list|get|set; zoneadm: install|boot|halt|uninstall|list; zonecfg: configure|delete; dladm: create-vnic|delete-vnic|show-vnic. */
  sub?: string;
  /** Substring of the joined arguments (to target one VM). */
  match?: string;
  exitCode?: number;
  stderr?: string;
  sleepMs?: number;
  times?: number;
}

export interface FakeZone {
  name: string;
  state: string;
  brand: string;
  zonepath: string;
  nets: { physical: string; allowedAddress?: string; defrouter?: string }[];
  devices: string[];
  fs: { dir: string; special: string }[];
  attrs: Record<string, string>;
}

/** The link every control VNIC is created over, and the image's size (10 GiB). */
export const FAKE_CONTROL_LINK = "stub0";
export const FAKE_IMAGE_BYTES = 10 * 2 ** 30;

export class FakeIllumos {
  private constructor(readonly root: string) {}

  static async create(): Promise<FakeIllumos> {
    const root = await mkdtemp(join(tmpdir(), "vmq-fake-illumos-"));
    await mkdir(join(root, "state", "datasets"), { recursive: true });
    await mkdir(join(root, "state", "zones"), { recursive: true });
    await mkdir(join(root, "state", "links"), { recursive: true });
    await mkdir(join(root, "state", "vnics"), { recursive: true });
    await mkdir(join(root, "state", "neighbours"), { recursive: true });
    await mkdir(join(root, "work"), { recursive: true });
    await mkdir(join(root, "rom"), { recursive: true });
    await writeFile(join(root, "rom", "OVMF_CODE.fd"), "fake bootrom");
    await writeFile(join(root, "state", "links", `${FAKE_CONTROL_LINK}.json`), "{}");
    const f = new FakeIllumos(root);
    await f.addDataset("rpool/vms");
    await f.addDataset("rpool/images");
    await f.addDataset("rpool/images/base", { volsize: FAKE_IMAGE_BYTES });
    await f.addDataset("rpool/images/base@latest", { volsize: FAKE_IMAGE_BYTES });
    return f;
  }

  /** Where the fake zone boot asks for propolis-servers (set by the Propolis fixture). */
  launcherUrl: string | undefined;

  /** A bootrom file in the "global zone". */
  get bootromPath(): string {
    return join(this.root, "rom", "OVMF_CODE.fd");
  }

  get stateDir(): string {
    return join(this.root, "state");
  }
  get workRoot(): string {
    return join(this.root, "work");
  }
  /** Environment the runner must pass to the fake tools. */
  get env(): Record<string, string> {
    return {
      FAKE_ILLUMOS_STATE: this.stateDir,
      ...(this.launcherUrl === undefined ? {} : { FAKE_PROPOLIS_LAUNCHER: this.launcherUrl }),
    };
  }
  get runnerOptions() {
    // Generous: a loaded machine starts the Node-based fake tools slowly.
    return { binDir: FAKE_BIN_DIR, env: this.env, timeoutMs: 60_000 };
  }

  async addDataset(name: string, props: { volsize?: number } = {}): Promise<void> {
    await writeFile(
      join(this.stateDir, "datasets", name.replaceAll("/", "%2F")),
      JSON.stringify(props),
    );
  }
  async dataset(name: string): Promise<{ origin?: string; volsize?: number } | undefined> {
    try {
      const f = join(this.stateDir, "datasets", name.replaceAll("/", "%2F"));
      return JSON.parse(await readFile(f, "utf8")) as { origin?: string; volsize?: number };
    } catch {
      return undefined;
    }
  }
  /** A VNIC made by the operator (a guest's), with its MAC. */
  async addVnic(name: string, mac: string): Promise<void> {
    const f = join(this.stateDir, "vnics", `${name}.json`);
    await writeFile(f, JSON.stringify({ link: FAKE_CONTROL_LINK, mac }));
  }
  async vnics(): Promise<string[]> {
    return (await readdir(join(this.stateDir, "vnics"))).map((f) => f.replace(/\.json$/, ""));
  }
  /** What `arp -an` and `ndp -an` print inside a zone. */
  async setNeighbours(zone: string, tables: { arp?: string; ndp?: string }): Promise<void> {
    const dir = join(this.stateDir, "neighbours");
    const tmp = join(dir, `.${zone}.tmp`);
    await writeFile(tmp, JSON.stringify(tables));
    await rename(tmp, join(dir, `${zone}.json`));
  }
  async datasets(): Promise<string[]> {
    return (await readdir(join(this.stateDir, "datasets")))
      .map((f) => f.replaceAll("%2F", "/"))
      .sort();
  }
  async zones(): Promise<FakeZone[]> {
    const dir = join(this.stateDir, "zones");
    const names = await readdir(dir);
    return Promise.all(
      names.map(async (n) => JSON.parse(await readFile(join(dir, n), "utf8")) as FakeZone),
    );
  }
  async zone(name: string): Promise<FakeZone | undefined> {
    return (await this.zones()).find((z) => z.name === name);
  }
  async setFaults(faults: FakeFault[]): Promise<void> {
    // Replaced by rename: a fake tool may be reading it right now.
    const tmp = join(this.stateDir, ".faults.tmp");
    await writeFile(tmp, JSON.stringify(faults));
    await rename(tmp, join(this.stateDir, "faults.json"));
  }
  /** Every tool invocation so far, as argv arrays ([tool, ...args]). */
  async calls(): Promise<string[][]> {
    try {
      const text = await readFile(join(this.stateDir, "calls.log"), "utf8");
      return text
        .split("\n")
        .filter(Boolean)
        .map((l) => JSON.parse(l) as string[]);
    } catch {
      return [];
    }
  }
  async cleanup(): Promise<void> {
    await rm(this.root, { recursive: true, force: true });
  }
}
