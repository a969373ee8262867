import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { connectionSettings } from "../../../src/cli/connection.js";
import { ContextStore, configDir, contextName } from "../../../src/cli/contexts.js";
import { isVmqError } from "../../../src/lib/errors.js";

const code = (c: string) => (e: unknown) => isVmqError(e) && e.code === c;

describe("contexts", () => {
  let dir: string;
  let store: ContextStore;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "vmq-ctx-"));
    store = new ContextStore(join(dir, "cfg"));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it("lives under VMQ_CONFIG_DIR, else XDG_CONFIG_HOME/vmq, else ~/.config/vmq", () => {
    assert.equal(configDir({ VMQ_CONFIG_DIR: "/etc/x" }), "/etc/x");
    assert.equal(configDir({ XDG_CONFIG_HOME: "/home/u/.cfg" }), "/home/u/.cfg/vmq");
    assert.match(
      configDir({ XDG_CONFIG_HOME: "relative" }),
      /\.config\/vmq$/,
      "XDG must be absolute",
    );
    assert.match(configDir({}), /\.config\/vmq$/);
  });

  it("refuses names that are not plain words (they name files)", () => {
    for (const bad of ["", "../x", "a/b", "a.b", ".hidden", "x".repeat(65), "a b"])
      assert.throws(() => contextName(bad), code("cli::invalid-context"), JSON.stringify(bad));
    assert.equal(contextName("prod-eu_1"), "prod-eu_1");
  });

  it("writes each context 0600 in a 0700 folder, and selects one", async () => {
    await store.put("lab", { nats: "nats://10.0.0.5:4222", prefix: "lab" });
    await store.put("prod", { nats: "nats://prod:4222" });
    const file = join(store.dir, "contexts", "lab.json");
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    assert.equal((await stat(join(store.dir, "contexts"))).mode & 0o777, 0o700);
    assert.deepEqual(await store.names(), ["lab", "prod"]);
    assert.equal(await store.current(), undefined);
    await store.select("lab");
    assert.equal(await store.current(), "lab");
    assert.equal((await stat(join(store.dir, "current"))).mode & 0o777, 0o600);
    await assert.rejects(store.select("nope"), code("cli::unknown-context"));
  });

  it("refuses a context file with a secret or garbage in it", async () => {
    await writeFile(join(store.dir, "contexts", "bad.json"), '{"password":"hunter2"}');
    await assert.rejects(store.get("bad"), code("cli::invalid-context"));
    await writeFile(join(store.dir, "contexts", "bad.json"), "{nope");
    await assert.rejects(store.get("bad"), code("cli::invalid-context"));
    await store.remove("bad");
    assert.deepEqual(await store.names(), ["lab", "prod"]);
  });

  it("precedence: flag > environment variable > context > default", async () => {
    const env = { VMQ_CONFIG_DIR: store.dir };
    const fromCtx = await connectionSettings({}, env);
    assert.equal(fromCtx.context, "lab");
    assert.equal(fromCtx.config.nats, "nats://10.0.0.5:4222");
    assert.equal(fromCtx.config.prefix, "lab");
    const envWins = await connectionSettings({}, { ...env, VMQ_PREFIX: "envp" });
    assert.equal(envWins.config.prefix, "envp");
    assert.equal(envWins.config.nats, "nats://10.0.0.5:4222", "the rest still from the context");
    const flagWins = await connectionSettings({ prefix: "flagp" }, { ...env, VMQ_PREFIX: "envp" });
    assert.equal(flagWins.config.prefix, "flagp");
    const other = await connectionSettings({ context: "prod" }, env);
    assert.equal(other.config.nats, "nats://prod:4222");
    assert.equal(other.config.prefix, "vmq", "the default where the context says nothing");
    const byEnv = await connectionSettings({}, { ...env, VMQ_CONTEXT: "prod" });
    assert.equal(byEnv.context, "prod");
    await assert.rejects(
      connectionSettings({ context: "gone" }, env),
      code("cli::unknown-context"),
    );
    const none = await connectionSettings({}, { VMQ_CONFIG_DIR: join(dir, "empty") });
    assert.equal(none.context, undefined);
    assert.equal(none.config.prefix, "vmq");
  });

  it("removing the selected context unselects it", async () => {
    await store.remove("lab");
    assert.equal(await store.current(), undefined);
    assert.equal(
      (
        JSON.parse(await readFile(join(store.dir, "contexts", "prod.json"), "utf8")) as {
          nats: string;
        }
      ).nats,
      "nats://prod:4222",
    );
  });
});
