/** Test-side handle on the fake illumos tools: a temp state dir, faults, and introspection. */
import { mkdtemp, mkdir, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const FAKE_BIN_DIR = join(dirname(fileURLToPath(import.meta.url)), "bin");

export interface FakeFault {
  tool: "zfs" | "zonecfg" | "zoneadm" | "zlogin" | "mkisofs";
  /** zfs: clone|destroy|list; zoneadm: install|boot|halt|uninstall|list; zonecfg: configure|delete. */
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
  nets: string[];
  devices: string[];
  fs: { dir: string; special: string }[];
  attrs: Record<string, string>;
  addrs?: string;
}

export class FakeIllumos {
  private constructor(readonly root: string) {}

  static async create(): Promise<FakeIllumos> {
    const root = await mkdtemp(join(tmpdir(), "vmq-fake-illumos-"));
    await mkdir(join(root, "state", "datasets"), { recursive: true });
    await mkdir(join(root, "state", "zones"), { recursive: true });
    await mkdir(join(root, "work"), { recursive: true });
    const f = new FakeIllumos(root);
    await f.addDataset("rpool/vms");
    await f.addDataset("rpool/images");
    await f.addDataset("rpool/images/base");
    await f.addDataset("rpool/images/base@latest");
    return f;
  }

  get stateDir(): string {
    return join(this.root, "state");
  }
  get workRoot(): string {
    return join(this.root, "work");
  }
  /** Environment the runner must pass to the fake tools. */
  get env(): Record<string, string> {
    return { FAKE_ILLUMOS_STATE: this.stateDir };
  }
  get runnerOptions() {
    return { binDir: FAKE_BIN_DIR, env: this.env, timeoutMs: 15_000 };
  }

  async addDataset(name: string): Promise<void> {
    await writeFile(join(this.stateDir, "datasets", name.replaceAll("/", "%2F")), "{}");
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
