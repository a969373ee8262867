import {
  appendFileSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import type { VmHandle, VmState } from "../../../contracts/index.js";

export interface NoopVm {
  handle: VmHandle;
  state: VmState;
}

/**
 * The Noop backend's state dir: one `<vmId>.json` per VM, so VMs outlive the worker process
 * (crash and restart tests), and calls.log, one line per effect (`start vm-1`) that fault
 * tests count (test/helpers/chaos.ts), and `<vmId>.user-data`, the cloud-init user-data a
 * prepare was given (the Noop's seed ISO).
 */
export class NoopStore {
  readonly #dir: string;

  constructor(dir: string) {
    this.#dir = dir;
    mkdirSync(dir, { recursive: true });
  }

  load(): NoopVm[] {
    const out: NoopVm[] = [];
    for (const f of readdirSync(this.#dir)) {
      if (!f.endsWith(".json")) continue;
      try {
        out.push(JSON.parse(readFileSync(join(this.#dir, f), "utf8")) as NoopVm);
      } catch {
        /* a torn write from a killed process: that VM is simply unknown */
      }
    }
    return out;
  }

  /** One VM's record as the state dir has it now (another process of the host may have moved it). */
  read(vmId: string): NoopVm | undefined {
    try {
      return JSON.parse(readFileSync(this.#file(vmId), "utf8")) as NoopVm;
    } catch {
      return undefined;
    }
  }

  /** Whole-file write then rename, so a killed process never leaves half a record. */
  save(v: NoopVm): void {
    if (v.state === "destroyed") return this.remove(v.handle.id);
    const file = this.#file(v.handle.id);
    writeFileSync(`${file}.tmp`, JSON.stringify(v));
    renameSync(`${file}.tmp`, file);
  }

  remove(vmId: string): void {
    rmSync(this.#file(vmId), { force: true });
    rmSync(this.seedFile(vmId), { force: true });
  }

  /** `<vmId>.user-data` (0600): the user-data a prepare was given, as a real seed would hold it. */
  seed(vmId: string, userData: string): void {
    writeFileSync(this.seedFile(vmId), userData, { mode: 0o600 });
  }

  seedFile(vmId: string): string {
    return join(this.#dir, `${vmId}.user-data`);
  }

  effect(op: string, vmId: string): void {
    appendFileSync(join(this.#dir, "calls.log"), `${op} ${vmId}\n`);
  }

  #file(vmId: string): string {
    return join(this.#dir, `${vmId}.json`);
  }
}
