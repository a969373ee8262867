/**
 * QEMU side by side (`--only qemu`): the same guest, the same QEMU argv, in the same minutes,
 * driven by vmq (a real `vmq worker` process; commands and events over NATS) and raw (QEMU
 * spawned and driven over QMP by this process). Pairs alternate which goes first, so a change
 * in the machine's load hits both alike; the ratios and differences are per pair.
 *  - start: vmq publishes vm.start until vm.started arrives; raw spawns QEMU until QMP is ready
 *    (greeting and capabilities);
 *  - stop: once the guest is up (its ready marker on the console), vmq publishes vm.stop until
 *    vm.stopped arrives; raw sends system_powerdown until the QEMU process is gone.
 */
import { randomUUID } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { NatsConnection } from "@nats-io/transport-node";
import { execa } from "execa";
import type { VmEvent } from "../../src/contracts/index.js";
import { cleanupDataDir, qemuTestGuest, READY_MARKER } from "../../test/helpers/qemu-guest.js";
import type { NatsServer } from "../../test/helpers/nats-server.js";
import { WorkerProcess } from "../../test/helpers/worker-process.js";
import { benchPrefix } from "./common.js";
import { QmpClient, VmqClient, buildQemuArgs, detectAccelerator } from "./built.js";
import { quantile, round } from "./stats.js";

export interface QemuPair {
  /** Which ran first in this pair. */
  first: "vmq" | "raw";
  vmq: { startMs: number; stopMs: number };
  raw: { startMs: number; stopMs: number };
}
export interface QemuResult {
  accelerator: string;
  pairs: QemuPair[];
}

const HOST = "bench-qemu";
const now = (): number => performance.now();

export async function qemuSideBySide(
  server: NatsServer,
  nc: NatsConnection,
  reps: number,
  log: (s: string) => void,
): Promise<QemuResult> {
  const guest = await qemuTestGuest();
  if ("unavailable" in guest)
    throw new Error(`${guest.unavailable.missing}; ${guest.unavailable.fix}`);
  const dir = await mkdtemp(join(tmpdir(), "vmq-bench-qemu-"));
  const prefix = benchPrefix("qemu");
  const worker = new WorkerProcess([
    ...["--nats", server.url, "--prefix", prefix, "--host", HOST, "--backend", "qemu"],
    ...["--image-roots", guest.dir, "--data-dir", join(dir, "worker"), "--log-level", "warn"],
  ]).start();
  const client = new VmqClient(nc, { prefix, timeoutMs: 120_000 });
  const raw = new RawQemu(join(dir, "raw"), guest.image);
  const vmId = `bq-${randomUUID().slice(0, 8)}`;
  try {
    await waitUntil("the worker's host record", async () =>
      (await client.hosts()).some((h) => h.host === HOST),
    );
    const spec = { name: "bench", imagePath: guest.image, vcpus: 1, memoryMb: 128 };
    const prepared = await client.send(HOST, { type: "vm.prepare", vmId, spec });
    if (prepared.outcome.type !== "vm.prepared")
      throw new Error(`vm.prepare: ${JSON.stringify(prepared.outcome)}`);
    await raw.prepare();
    const consoleLog = join(dir, "worker", "qemu", vmId, "console.log");
    const vmq = new VmqSide(nc, client, prefix, vmId, consoleLog);
    const pairs: QemuPair[] = [];
    for (let rep = 0; rep < reps; rep++) {
      const first: QemuPair["first"] = rep % 2 ? "raw" : "vmq";
      const sides = { vmq: () => vmq.cycle(), raw: () => raw.cycle() };
      const a = await sides[first]();
      const b = await sides[first === "vmq" ? "raw" : "vmq"]();
      const pair = first === "vmq" ? { first, vmq: a, raw: b } : { first, vmq: b, raw: a };
      pairs.push(pair);
      log(
        `qemu pair ${rep + 1}/${reps}: start vmq ${pair.vmq.startMs} / raw ${pair.raw.startMs} ms, ` +
          `stop vmq ${pair.vmq.stopMs} / raw ${pair.raw.stopMs} ms`,
      );
    }
    return { accelerator: detectAccelerator("auto").accelerator, pairs };
  } finally {
    await client.send(HOST, { type: "vm.destroy", vmId }).catch(() => undefined);
    await worker.kill("SIGTERM");
    await raw.close();
    await cleanupDataDir(join(dir, "worker")).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  }
}

/** vmq's side: commands published on NATS, the outcome event taken from a core subscription. */
class VmqSide {
  constructor(
    private readonly nc: NatsConnection,
    private readonly client: VmqClient,
    private readonly prefix: string,
    private readonly vmId: string,
    private readonly consoleLog: string,
  ) {}

  async cycle(): Promise<{ startMs: number; stopMs: number }> {
    const offset = (await readFile(this.consoleLog, "utf8").catch(() => "")).length;
    const startMs = await this.#timed("vm.start", "vm.started");
    await waitForMarker(this.consoleLog, offset);
    const stopMs = await this.#timed("vm.stop", "vm.stopped");
    return { startMs, stopMs };
  }

  async #timed(type: "vm.start" | "vm.stop", want: string): Promise<number> {
    const sub = this.nc.subscribe(`${this.prefix}.evt.${HOST}.${this.vmId}`);
    const got = (async () => {
      for await (const m of sub) {
        const e = m.json<VmEvent>();
        if (e.type === want) return now();
        if (e.type === "vm.command-failed") throw new Error(`${type}: ${JSON.stringify(e)}`);
      }
      throw new Error(`${type}: subscription ended`);
    })();
    const t0 = now();
    const body =
      type === "vm.stop" ? { type, vmId: this.vmId, timeoutMs: 60_000 } : { type, vmId: this.vmId };
    await this.client.publish(HOST, body);
    const t1 = await got;
    sub.unsubscribe();
    return round(t1 - t0, 1);
  }
}

/** Raw QEMU: the argv vmq builds, spawned by execa; QMP spoken directly. */
class RawQemu {
  readonly #args: string[];
  readonly #paths;
  constructor(
    private readonly dir: string,
    private readonly image: string,
  ) {
    this.#paths = {
      overlay: join(dir, "overlay.qcow2"),
      qmp: join(dir, "qmp.sock"),
      console: join(dir, "console.sock"),
      consoleLog: join(dir, "console.log"),
      pid: join(dir, "qemu.pid"),
    };
    const { accelerator } = detectAccelerator("auto");
    this.#args = buildQemuArgs({
      vmId: "raw",
      accelerator,
      cpuModel: accelerator === "kvm" ? "kvm64" : "max",
      machine: "q35",
      vcpus: 1,
      memoryMb: 128,
      overlayPath: this.#paths.overlay,
      qmpSocket: this.#paths.qmp,
      consoleSocket: this.#paths.console,
      consoleLog: this.#paths.consoleLog,
      pidFile: this.#paths.pid,
      network: { type: "user" },
      macAddr: "52:54:00:be:4c:00",
      sshHostPort: 20_000 + Math.floor(Math.random() * 20_000),
      vnc: false,
    });
  }

  async prepare(): Promise<void> {
    await execa("mkdir", ["-p", this.dir]);
    await execa("qemu-img", [
      "create",
      "-q",
      "-f",
      "qcow2",
      "-b",
      this.image,
      "-F",
      "raw",
      this.#paths.overlay,
    ]);
  }

  async cycle(): Promise<{ startMs: number; stopMs: number }> {
    for (const f of [this.#paths.qmp, this.#paths.console, this.#paths.pid])
      await rm(f, { force: true });
    const offset = (await readFile(this.#paths.consoleLog, "utf8").catch(() => "")).length;
    const t0 = now();
    await execa("qemu-system-x86_64", this.#args, { stdin: "ignore" });
    const qmp = await connectQmp(this.#paths.qmp);
    const startMs = round(now() - t0, 1);
    const pid = Number((await readFile(this.#paths.pid, "utf8")).trim());
    await waitForMarker(this.#paths.consoleLog, offset);
    const t1 = now();
    await qmp.execute("system_powerdown");
    while (await alive(pid)) await new Promise((r) => setTimeout(r, 1));
    const stopMs = round(now() - t1, 1);
    qmp.close();
    return { startMs, stopMs };
  }

  async close(): Promise<void> {
    const pid = Number((await readFile(this.#paths.pid, "utf8").catch(() => "")).trim());
    if (pid > 1 && (await alive(pid))) process.kill(pid, "SIGKILL");
  }
}

/** Alive and still QEMU (a zombie's command line is empty). */
async function alive(pid: number): Promise<boolean> {
  const c = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
  return c.length > 0;
}

async function connectQmp(path: string): Promise<QmpClient> {
  for (;;) {
    try {
      return await QmpClient.connect(path, { connectTimeoutMs: 5000 });
    } catch {
      await new Promise((r) => setTimeout(r, 1));
    }
  }
}

async function waitForMarker(file: string, offset: number): Promise<void> {
  await waitUntil(`${READY_MARKER} in ${file}`, async () =>
    (await readFile(file, "utf8").catch(() => "")).slice(offset).includes(READY_MARKER),
  );
  // The power-button watcher is armed just before the marker; let the guest settle.
  await new Promise((r) => setTimeout(r, 300));
}

async function waitUntil(what: string, f: () => Promise<boolean>, ms = 180_000): Promise<void> {
  const end = Date.now() + ms;
  // Errors count as not yet (the worker provisions its streams as it starts).
  while (!(await f().catch(() => false))) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const med = (xs: number[]): number => round(quantile(xs, 0.5), 1);

/** The side-by-side table (Markdown): medians of each side, and the medians of the pairs' ratios and differences. */
export function qemuTable(r: QemuResult): string {
  const rows = [
    [
      "start to `vm.started` vs QMP ready",
      (p: QemuPair): [number, number] => [p.vmq.startMs, p.raw.startMs],
    ],
    [
      "stop to `vm.stopped` vs ACPI power-down to exit",
      (p: QemuPair): [number, number] => [p.vmq.stopMs, p.raw.stopMs],
    ],
  ] as const;
  const lines = [
    `QEMU side by side (${r.accelerator.toUpperCase()}, ${r.pairs.length} pairs, medians; ratio and difference per pair):`,
    "",
    "| what | vmq ms | raw QEMU ms | ratio | difference ms |",
    "| --- | --- | --- | --- | --- |",
  ];
  for (const [label, pick] of rows) {
    const v = r.pairs.map((p) => pick(p));
    const ratios = v.map(([a, b]) => a / b);
    const diffs = v.map(([a, b]) => a - b);
    lines.push(
      `| ${label} | ${med(v.map((x) => x[0]))} | ${med(v.map((x) => x[1]))} | ${round(quantile(ratios, 0.5), 2)}x | ${med(diffs) >= 0 ? "+" : ""}${med(diffs)} |`,
    );
  }
  return lines.join("\n");
}
