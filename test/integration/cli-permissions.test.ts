/** `vmq permissions` as a process (offline): the blocks it prints are what the SDK computes. */
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { execa } from "execa";
import {
  schedulerPermissions,
  workerPermissions,
  type NatsPermissions,
} from "../../src/contracts/permissions.js";
import { assertOneLineError, runVmq } from "../helpers/cli.js";
import { findNatsServer } from "../helpers/nats-server.js";

describe("vmq permissions (the CLI, as a process; offline)", { timeout: 60_000 }, () => {
  /** No VMQ_PREFIX from the caller's environment: the default prefix unless a test sets one. */
  const vmq = (args: string[], env: Record<string, string> = {}) =>
    runVmq(["permissions", ...args], { env: { VMQ_PREFIX: "", ...env }, timeout: 30_000 });
  const json = (stdout: string): NatsPermissions => JSON.parse(stdout) as NatsPermissions;

  it("--json prints workerPermissions() / schedulerPermissions() for the host and prefix", async () => {
    const [w, acme, sched, schedEnv] = await Promise.all([
      vmq(["--host", "h1", "--json"]),
      vmq(["--host", "h-2", "--prefix", "acme", "--no-provision", "--json"]),
      vmq(["--role", "scheduler", "--json"]),
      vmq(["--role", "scheduler", "--json"], { VMQ_PREFIX: "acme" }),
    ]);
    for (const r of [w, acme, sched, schedEnv]) assert.equal(r.exitCode, 0, r.stderr);
    assert.deepEqual(json(w.stdout), workerPermissions("vmq", "h1"));
    assert.deepEqual(json(acme.stdout), workerPermissions("acme", "h-2", { provision: false }));
    assert.deepEqual(json(sched.stdout), schedulerPermissions("vmq"));
    assert.deepEqual(json(schedEnv.stdout), schedulerPermissions("acme"));
  });

  it("prints a permissions block that nats-server accepts in a user entry", async () => {
    const r = await vmq(["--host", "h1"]);
    assert.equal(r.exitCode, 0, r.stderr);
    const at = r.stdout.indexOf("permissions: ");
    assert.ok(at > 0, r.stdout);
    assert.ok(
      r.stdout
        .slice(0, at)
        .split("\n")
        .filter(Boolean)
        .every((l) => l.startsWith("#")),
      "only comments before the block",
    );
    assert.deepEqual(
      JSON.parse(r.stdout.slice(at + "permissions: ".length)),
      workerPermissions("vmq", "h1"),
    );
    const dir = await mkdtemp(join(tmpdir(), "vmq-perms-"));
    try {
      const conf = join(dir, "server.conf");
      await writeFile(
        conf,
        `authorization {\n  users: [\n    { user: "vmq-worker-h1", password: "x"\n${r.stdout}    }\n  ]\n}\n`,
      );
      const t = await execaTest(await findNatsServer(), conf);
      assert.equal(t.exitCode, 0, `${t.stdout}${t.stderr}`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("validates --host and --role: exit 2 with one readable line", async () => {
    const [badHost, noHost, badRole, schedHost] = await Promise.all([
      vmq(["--host", "bad.host"]),
      vmq([]),
      vmq(["--host", "h1", "--role", "admin"]),
      vmq(["--role", "scheduler", "--host", "h1"]),
    ]);
    for (const r of [badHost, noHost, badRole, schedHost]) {
      assert.equal(r.exitCode, 2, r.stderr);
      assert.equal(r.stdout, "");
    }
    assertOneLineError(badHost.stderr, /^vmq: invalid host "bad\.host": .*\[cli::invalid-host\]/);
    assertOneLineError(noHost.stderr, /--host is required.*\[cli::missing-host\] — hint: \S/);
    assertOneLineError(
      badRole.stderr,
      /'admin' is invalid.*worker, scheduler.* — hint: see vmq permissions --help for the usage$/,
    );
    assertOneLineError(schedHost.stderr, /\[cli::invalid-option\]/);
  });
});

/** `nats-server -t -c conf`: checks a configuration file and exits. */
const execaTest = (bin: string, conf: string) =>
  execa(bin, ["-t", "-c", conf], { reject: false, stdin: "ignore", timeout: 10_000 });
