import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { execa } from "execa";
import { NatsServer, testPrefix } from "../helpers/nats-server.js";
import { cleanupDataDir, qemuTestGuest, type QemuGuestImages } from "../helpers/qemu-guest.js";
import { skipWhenMissing, type MissingInput } from "../helpers/required.js";
import { eventually } from "../helpers/worker-harness.js";

/**
 * The package as a user gets it: `npm pack` (which builds), unpacked into a fresh directory,
 * and its `vmq` binary run as a process, a worker booting a real QEMU guest among them, with
 * the serial console relayed both ways by `vmq console`.
 */
const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as {
  version: string;
  bin: { vmq: string };
};

describe("the packed vmq package, run as a user would", { timeout: 600_000 }, () => {
  let dir: string;
  let files: string[] = [];
  let bin: string;
  const vmqProcess = (args: string[]) => execa(process.execPath, [bin, ...args], { reject: false });
  const vmq = (args: string[], opts: { input?: string } = {}) =>
    execa(process.execPath, [bin, ...args], { reject: false, timeout: 120_000, ...opts });

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "vmq-pack-"));
    const packed = await execa("npm", ["pack", "--json", "--pack-destination", dir], {
      cwd: ROOT,
      timeout: 300_000,
    });
    // npm prints the build's output before its JSON report.
    const report = JSON.parse(packed.stdout.slice(packed.stdout.indexOf("\n[") + 1)) as {
      filename: string;
      files: { path: string }[];
    }[];
    const first = report[0];
    assert.ok(first, "npm pack reported its tarball");
    files = first.files.map((f) => f.path);
    await execa("tar", ["-xzf", join(dir, first.filename), "-C", dir]);
    // The runtime dependencies as `npm install` would provide them (no registry needed here).
    await symlink(join(ROOT, "node_modules"), join(dir, "package", "node_modules"), "dir");
    bin = join(dir, "package", pkg.bin.vmq);
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("ships the built CLI, SDK and schemas, and no sources or tests", () => {
    for (const f of ["dist/cli/main.js", "dist/client/index.js", "dist/client/index.d.ts"])
      assert.ok(files.includes(f), `${f} is in the package`);
    assert.ok(files.includes("schemas/index.json"), "the JSON Schemas are in the package");
    assert.ok(files.includes("README.md"));
    assert.ok(files.includes("LICENSE"), "the licence package.json names is in the package");
    assert.ok(files.includes("docs/wire-contract.md"), "the docs README links are in the package");
    const stray = files.filter((f) => /^(src|test|scripts)\//.test(f) || f.endsWith(".ts.map"));
    assert.deepEqual(stray, [], "no sources, tests or scripts");
  });

  it("runs: --version, --help on every subcommand, schemas, and a usage error", async () => {
    const v = await vmq(["--version"]);
    assert.equal(v.exitCode, 0, v.stderr);
    assert.equal(v.stdout.trim(), pkg.version);
    const help = await vmq(["--help"]);
    const subcommands = ["worker", "prepare", "start", "stop", "get", "list", "events", "dlq"];
    for (const c of subcommands) assert.match(help.stdout, new RegExp(`\\b${c}\\b`));
    const schemas = await vmq(["schemas", "--help"]);
    assert.equal(schemas.exitCode, 0, schemas.stderr);
    const bad = await vmq(["stop", "no/such/vm"]);
    assert.equal(bad.exitCode, 2, `${bad.stdout}${bad.stderr}`);
    const badLines = bad.stderr.split("\n").filter(Boolean);
    assert.equal(badLines.length, 1, `exactly one line on stderr:\n${bad.stderr}`);
    assert.match(badLines[0] ?? "", /^vmq: invalid vmId .*\[cli::invalid-vm-id\]( — hint: .+)?$/);
  });

  describe("with a real QEMU guest", () => {
    let guest: QemuGuestImages | undefined;
    let missing: MissingInput | undefined;
    let server: NatsServer;
    let worker: ReturnType<typeof vmqProcess> | undefined;
    let conn: string[];
    let data: string;

    before(async () => {
      const g = await qemuTestGuest();
      if ("unavailable" in g) {
        missing = { ...g.unavailable, needed: "packed vmq with QEMU" };
        return;
      }
      guest = g;
      server = await NatsServer.start();
      data = await mkdtemp(join(tmpdir(), "vmq-pack-data-"));
      conn = ["--nats", server.url, "--prefix", testPrefix()];
      worker = vmqProcess([
        "worker",
        ...conn,
        "--host",
        "pk1",
        "--backend",
        "qemu",
        "--image-roots",
        g.dir,
        "--data-dir",
        data,
        "--log-level",
        "warn",
      ]);
      await eventually(
        async () => {
          const r = await vmq(["hosts", ...conn, "--json"]);
          const hosts = r.exitCode === 0 ? (JSON.parse(r.stdout) as { state: string }[]) : [];
          return hosts.some((h) => h.state === "running") ? true : undefined;
        },
        90_000,
        "the packed worker to be ready",
      );
    });
    after(async () => {
      worker?.kill("SIGTERM");
      await worker;
      await server?.stop();
      if (data) await cleanupDataDir(data);
    });

    it("boots the guest and relays its serial console both ways through `vmq console`", async (t) => {
      if (skipWhenMissing(t, missing) || !guest) return;
      const spec = join(dir, "spec.json");
      await writeFile(spec, JSON.stringify({ name: "pk", imagePath: guest.image, memoryMb: 128 }));
      const prepared = await vmq([
        "prepare",
        "pk-1",
        "--spec",
        spec,
        "--host",
        "pk1",
        ...conn,
        "--json",
      ]);
      assert.equal(prepared.exitCode, 0, prepared.stderr);
      assert.equal(
        (JSON.parse(prepared.stdout) as { outcome: { type: string } }).outcome.type,
        "vm.prepared",
      );
      const started = await vmq(["start", "pk-1", ...conn, "--json"]);
      assert.equal(started.exitCode, 0, started.stderr);
      const workDir = join(data, "qemu", "pk-1");
      assert.ok(existsSync(workDir), "the VM's work dir is under the worker's data dir");

      const console = execa(process.execPath, [bin, "console", "pk-1", ...conn], {
        reject: false,
        stdin: "pipe",
        timeout: 120_000,
      });
      let out = "";
      console.stdout?.on("data", (b: Buffer) => (out += b.toString("latin1")));
      // Typing reaches the guest's tty, which echoes it (retyped until the session is up).
      let typedAt = 0;
      await eventually(
        () => {
          if (out.includes("vmq-cli-console")) return true;
          if (Date.now() - typedAt > 1_000) {
            console.stdin?.write("vmq-cli-console\r");
            typedAt = Date.now();
          }
          return undefined;
        },
        60_000,
        "the guest to echo what `vmq console` typed",
      );
      const stopped = await vmq(["stop", "pk-1", ...conn, "--json", "--timeout-ms", "30000"]);
      assert.equal(stopped.exitCode, 0, stopped.stderr);
      assert.equal(
        (JSON.parse(stopped.stdout) as { outcome: { how?: string } }).outcome.how,
        "acpi",
      );
      await eventually(
        () => (out.includes("VMQ-GUEST-POWEROFF (button)") ? true : undefined),
        15_000,
        "the guest's power-off line through `vmq console`",
      );
      console.stdin?.write("\x1d"); // Ctrl-] detaches
      const ended = await console;
      assert.equal(ended.exitCode, 0, ended.stderr);

      const destroyed = await vmq(["destroy", "pk-1", ...conn, "--json"]);
      assert.equal(destroyed.exitCode, 0, destroyed.stderr);
      assert.equal(existsSync(workDir), false, "destroy removed the VM's work dir");
    });
  });
});
