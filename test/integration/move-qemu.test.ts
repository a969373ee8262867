/**
 * A QEMU VM's disk moves with it (the tiny test guest under TCG, two QEMU workers on one
 * nats-server). The guest has no shell on its console and never writes its disk, so the test
 * writes into the VM's disk itself, through QEMU's own tools, while the VM is stopped on ha:
 *  - a file in the guest's FAT filesystem: the overlay's view of the boot disk is read out with
 *    `qemu-img dd`, the file added with `mcopy`, the result written back into the overlay with
 *    `qemu-io write -s` (so the file lives in ha's overlay only, not in the base image);
 *  - 64 KiB of a known byte at 600 MiB, past the 16 MiB base image and inside the 1 GiB the spec
 *    asks for (data an export that stopped at the backing file's size would lose).
 * After `vmq move --to hb` the VM runs on hb from an overlay over the exported image in hb's
 * image cache; there `mtype` reads the file back with its content and qemu-io the bytes. The
 * base image has no such file and an unwritten region reads as something else, so both checks
 * can fail. The export stays in the bucket while the VM runs from it; 64 KiB written on hb
 * and a move back to ha make a new export, which replaces it. Then each worker is SIGKILLed
 * once mid-move, where a real process makes the
 * difference (the target's inside its start, with QEMU just launched; the source's inside its
 * stop): restarted, it adopts or finds what its QEMU did, and exactly one QEMU of the VM runs at
 * the end, on hb, counted from /proc, not from what the workers say. Skipped, with the reason
 * printed, without QEMU or the guest tools.
 */
import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { execa } from "execa";
import type { NatsConnection } from "@nats-io/transport-node";
import { ImageStore, move, VmqClient } from "../../src/client/index.js";
import type { MoveRecord } from "../../src/contracts/index.js";
import { runVmq } from "../helpers/cli.js";
import { NatsServer, testPrefix } from "../helpers/nats-server.js";
import { cleanupDataDir, qemuTestGuest, type QemuGuestImages } from "../helpers/qemu-guest.js";
import { skipWhenMissing, type MissingInput } from "../helpers/required.js";
import { WorkerProcess } from "../helpers/worker-process.js";
import { eventually } from "../helpers/worker-harness.js";

const OFFSET = "600M";
const PATTERN = "0x5a";
const NOTE = "::/VMQNOTE.TXT";
const BLOCK = 65_536;

describe("vmq move with QEMU: the disk moves with the VM", { timeout: 600_000 }, () => {
  let guest: QemuGuestImages | undefined;
  let missing: MissingInput | undefined;
  let server: NatsServer;
  let nc: NatsConnection;
  let client: VmqClient;
  let dir: string;
  let prefix: string;
  const workers: WorkerProcess[] = [];
  /** Data dirs of the SIGKILL cases' workers, to clean up (and kill their QEMUs) at the end. */
  const extraDirs: string[] = [];
  const dataOf = (host: string) => join(dir, host);
  const overlayOf = (host: string, vmId: string) =>
    join(dataOf(host), "qemu", vmId, "overlay.qcow2");

  before(async () => {
    const g = await qemuTestGuest();
    if ("unavailable" in g) {
      missing = { ...g.unavailable, needed: "a QEMU VM's disk moved between hosts" };
      return;
    }
    const io = await execa("qemu-io", ["--version"], { reject: false });
    if (io.exitCode !== 0) {
      missing = {
        missing: "qemu-io not installed",
        needed: "a QEMU VM's disk moved between hosts",
        fix: "install qemu-utils (./setup.sh does)",
      };
      return;
    }
    guest = g;
    server = await NatsServer.start();
    nc = await server.connect();
    prefix = testPrefix();
    client = new VmqClient(nc, { prefix, timeoutMs: 180_000 });
    dir = await mkdtemp(join(tmpdir(), "vmq-mvq-"));
    for (const host of ["ha", "hb"]) {
      const w = new WorkerProcess([
        ...["--nats", server.url, "--prefix", prefix, "--host", host],
        ...["--backend", "qemu", "--image-roots", g.dir, "--data-dir", dataOf(host)],
        ...["--heartbeat-ms", "300", "--log-level", "warn"],
      ]).start();
      workers.push(w);
    }
    await eventually(
      async () => ((await client.hosts()).length === 2 ? true : undefined),
      60_000,
      "both workers up",
    );
  });
  after(async () => {
    for (const w of workers) await w.kill();
    if (!guest) return;
    await nc.close();
    await server.stop();
    for (const d of [...["ha", "hb"].map(dataOf), ...extraDirs]) await cleanupDataDir(d);
    await rm(dir, { recursive: true, force: true });
  });

  /** qemu-io's read of 64 KiB at `at`, checked against the pattern: whether every byte matched. */
  const holdsPattern = async (overlay: string, at: string): Promise<boolean> => {
    const r = await execa(
      "qemu-io",
      ["-r", "-U", "-f", "qcow2", "-c", `read -P ${PATTERN} ${at} 64k`, overlay],
      { reject: false },
    );
    const out = `${r.stdout}\n${r.stderr}`;
    assert.match(out, /read 65536\/65536 bytes|verification failed/, out);
    return r.exitCode === 0 && !/verification failed/i.test(out);
  };

  /** The overlay's view of the guest's boot disk (its first `size` bytes) as a raw file. */
  const readBootDisk = async (overlay: string, size: number, out: string): Promise<void> => {
    await execa("qemu-img", [
      ...["dd", "-U", "-f", "qcow2", "-O", "raw", `bs=${BLOCK}`, `count=${size / BLOCK}`],
      ...[`if=${overlay}`, `of=${out}`],
    ]);
  };
  /** The note's content in a FAT image, or undefined when the file is not there. */
  const noteIn = async (fat: string): Promise<string | undefined> => {
    const r = await execa("mtype", ["-i", fat, NOTE], { reject: false });
    return r.exitCode === 0 ? r.stdout : undefined;
  };

  it("a file written into the guest's disk on ha is there on hb after the move; the VM runs on hb", async (t) => {
    if (skipWhenMissing(t, missing) || !guest) return;
    const spec = { name: "mq", imagePath: guest.image, vcpus: 1, memoryMb: 128, diskGb: 1 };
    assert.equal((await client.prepare("mq", spec, { host: "ha" })).outcome.type, "vm.prepared");
    assert.equal((await client.start("mq", { host: "ha" })).outcome.type, "vm.started");
    assert.equal((await client.stop("mq", { host: "ha" })).outcome.type, "vm.stopped");
    // Written while no QEMU has the overlay open (the guest itself never writes its disk).
    const size = (await stat(guest.image)).size;
    assert.equal(size % BLOCK, 0, "the boot disk is read out in whole blocks");
    const content = `written on ha before the move ${Date.now()}`;
    const fat = join(dir, "ha-boot.raw");
    await readBootDisk(overlayOf("ha", "mq"), size, fat);
    assert.equal(await noteIn(fat), undefined, "the base image has no note");
    await writeFile(join(dir, "note.txt"), content);
    await execa("mcopy", ["-i", fat, join(dir, "note.txt"), NOTE]);
    const fs = await execa("qemu-io", [
      ...["-f", "qcow2", "-c", `write -s ${fat} 0 ${size}`],
      overlayOf("ha", "mq"),
    ]);
    assert.match(fs.stdout, new RegExp(`wrote ${size}/${size} bytes`));
    const w = await execa("qemu-io", [
      ...["-f", "qcow2", "-c", `write -P ${PATTERN} ${OFFSET} 64k`],
      overlayOf("ha", "mq"),
    ]);
    assert.match(w.stdout, /wrote 65536\/65536 bytes/);
    assert.ok(await holdsPattern(overlayOf("ha", "mq"), OFFSET));
    await readBootDisk(overlayOf("ha", "mq"), size, join(dir, "ha-check.raw"));
    assert.equal(await noteIn(join(dir, "ha-check.raw")), content, "the note is in ha's overlay");
    assert.equal(await noteIn(guest.image), undefined, "and not in the base image");
    assert.equal((await client.start("mq", { host: "ha" })).outcome.type, "vm.started");

    const r = await runVmq(
      ["move", "mq", "--to", "hb", "--json", "--nats", server.url, "--prefix", prefix],
      { timeout: 400_000 },
    );
    assert.equal(r.exitCode, 0, r.stderr);
    const rec = JSON.parse(r.stdout) as MoveRecord;
    assert.equal(rec.step, "done");
    assert.equal(rec.disk?.format, "qcow2");

    // The move ran in another process (the CLI), and each worker writes its view record a
    // moment after its outcome: ha's may still say stopped for a while (seen under load).
    const v = await eventually(
      async () => {
        const x = await client.get("mq");
        return x?.host === "hb" ? x : undefined;
      },
      15_000,
      "mq on hb in the view",
    );
    assert.equal(v.state, "running");
    assert.equal(
      await client.query("hb", "mq", "state").then((x) => (x as { state?: string }).state),
      "running",
    );
    // The copy on ha is gone, files and all.
    const a = await execa("qemu-img", ["info", overlayOf("ha", "mq")], { reject: false });
    assert.notEqual(a.exitCode, 0);

    // hb's overlay stands on the exported image in hb's cache, and holds the bytes.
    const info = await execa("qemu-img", ["info", "-U", "--output=json", overlayOf("hb", "mq")]);
    const backing = (JSON.parse(info.stdout) as { "backing-filename"?: string })[
      "backing-filename"
    ];
    const hex = rec.disk?.digest.slice("sha256:".length) ?? "";
    assert.equal(backing, join(dataOf("hb"), "images", hex));
    const fatB = join(dir, "hb-boot.raw");
    await readBootDisk(overlayOf("hb", "mq"), size, fatB);
    assert.equal(await noteIn(fatB), content, "the file written on ha is there on hb");
    assert.ok(await holdsPattern(overlayOf("hb", "mq"), OFFSET), "the written bytes moved");
    assert.ok(!(await holdsPattern(overlayOf("hb", "mq"), "700M")), "an unwritten region is not");

    // The export stays in the bucket while the VM runs from it (an evacuation of hb needs it).
    const store = new ImageStore(client.nc, { prefix });
    const moveImages = async () =>
      (await store.list())
        .filter((i) => i.name.startsWith("move-"))
        .map((i) => `${i.name}@${i.digest}`);
    assert.deepEqual(await moveImages(), [rec.image]);
    // Written on hb, moved back: ha gets the new bytes, and the first export, which only hb's
    // copy ran from, goes with that copy.
    assert.equal((await client.stop("mq")).outcome.type, "vm.stopped");
    const w2 = await execa("qemu-io", [
      ...["-f", "qcow2", "-c", `write -P ${PATTERN} 700M 64k`],
      overlayOf("hb", "mq"),
    ]);
    assert.match(w2.stdout, /wrote 65536\/65536 bytes/);
    const back = await move(client, "mq", { to: "ha", timeoutMs: 300_000 });
    assert.equal(back.step, "done");
    assert.notEqual(back.image, rec.image, "a changed disk is a new export");
    assert.deepEqual(await moveImages(), [back.image]);
    assert.ok(await holdsPattern(overlayOf("ha", "mq"), "700M"), "hb's write came back to ha");
    assert.ok(await holdsPattern(overlayOf("ha", "mq"), OFFSET), "and ha's first write too");

    assert.equal((await client.destroy("mq")).outcome.type, "vm.destroyed");
  });

  /** The QEMU processes alive now whose command line names something under `root`. */
  const qemusUnder = async (root: string): Promise<number[]> => {
    const pids: number[] = [];
    for (const pid of await readdir("/proc")) {
      if (!/^\d+$/.test(pid)) continue;
      // A process that ended meanwhile (or a zombie) has no command line left.
      const args = (await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "")).split("\0");
      if (args[0]?.includes("qemu-system") && args.some((a) => a.includes(`${root}/`)))
        pids.push(Number(pid));
    }
    return pids;
  };

  // in-backend@N: the worker dies once its Nth backend call has had its effect, before the
  // outcome is recorded (ha: 1 prepare, 2 start, 3 the move's stop; hb: 1 prepare, 2 start).
  for (const [host, what, failpoint] of [
    ["hb", "inside its start, its QEMU just launched", "in-backend@2"],
    ["ha", "inside its stop, its QEMU just gone", "in-backend@3"],
  ] as const) {
    it(`the ${host === "ha" ? "source" : "target"}'s worker SIGKILLed ${what}, restarted: one QEMU runs, on hb`, async (t) => {
      if (skipWhenMissing(t, missing) || !guest) return;
      const p = testPrefix();
      const c = new VmqClient(nc, { prefix: p, timeoutMs: 180_000 });
      const data = (h: string) => join(dir, `${p}-${h}`);
      const spawn = (h: string, env: Record<string, string> = {}) => {
        const w = new WorkerProcess(
          [
            ...["--nats", server.url, "--prefix", p, "--host", h],
            ...["--backend", "qemu", "--image-roots", guest?.dir ?? "", "--data-dir", data(h)],
            ...["--heartbeat-ms", "300", "--ack-wait-ms", "3000", "--log-level", "info"],
          ],
          env,
        ).start();
        workers.push(w);
        return w;
      };
      extraDirs.push(data("ha"), data("hb"));
      const up = (w: WorkerProcess) => eventually(() => w.ready || undefined, 60_000, "running");
      const dying = spawn(host, { VMQ_FAILPOINTS: failpoint });
      const other = spawn(host === "ha" ? "hb" : "ha");
      await Promise.all([up(dying), up(other)]);
      const spec = { name: "mk", imagePath: guest.image, vcpus: 1, memoryMb: 128, diskGb: 1 };
      assert.equal((await c.prepare("mk", spec, { host: "ha" })).outcome.type, "vm.prepared");
      assert.equal((await c.start("mk", { host: "ha" })).outcome.type, "vm.started");
      assert.equal((await qemusUnder(data("ha"))).length, 1, "the VM runs on ha");

      const moving = move(c, "mk", { to: "hb", timeoutMs: 300_000 });
      await dying.ended();
      assert.deepEqual(dying.failpoints, [failpoint.split("@")[0]]);
      // What the SIGKILL left: the target's QEMU runs on (not the worker's child any more), or
      // the source's is gone; in both, never one on each host.
      const left = { ha: await qemusUnder(data("ha")), hb: await qemusUnder(data("hb")) };
      assert.deepEqual(
        [left.ha.length, left.hb.length],
        host === "hb" ? [0, 1] : [0, 0],
        JSON.stringify(left),
      );
      await up(spawn(host));
      const rec = await moving;
      assert.equal(rec.step, "done");
      const v = await c.get("mk");
      assert.deepEqual([v?.host, v?.state], ["hb", "running"]);
      const end = { ha: await qemusUnder(data("ha")), hb: await qemusUnder(data("hb")) };
      assert.equal(end.ha.length, 0, `no QEMU of the VM on ha: ${JSON.stringify(end)}`);
      assert.equal(end.hb.length, 1, `exactly one on hb: ${JSON.stringify(end)}`);
      // The restarted target adopted the QEMU its dead worker launched: not a second start.
      if (host === "hb") assert.deepEqual(end.hb, left.hb, "the same QEMU process");
      assert.equal((await c.destroy("mk")).outcome.type, "vm.destroyed");
      assert.deepEqual(await qemusUnder(data("hb")), [], "destroyed: no QEMU left");
    });
  }
});
