/**
 * Images with least privilege: a scheduler pushes with exactly `schedulerPermissions`, and a
 * worker holding exactly `workerPermissions` fetches, verifies and prepares from the image,
 * without a single permission violation in the server's log; the worker cannot push.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { NatsConnection } from "@nats-io/transport-node";
import { ImageStore, VmqClient } from "../../src/client/index.js";
import {
  schedulerPermissions,
  workerInboxPrefix,
  workerPermissions,
} from "../../src/contracts/permissions.js";
import type { Worker } from "../../src/worker/worker.js";
import { usersConfig } from "../helpers/nats-auth.js";
import { NatsServer, testPrefix } from "../helpers/nats-server.js";
import { connectAs, loggedViolations, startUserWorker } from "../helpers/permission-fleet.js";
import { SPEC } from "../helpers/worker-harness.js";

describe("images with least privilege", { timeout: 120_000 }, () => {
  const prefix = testPrefix();
  const users = [
    { user: "admin", password: "admin-pw" },
    { user: "scheduler", password: "s-pw", permissions: schedulerPermissions(prefix) },
    { user: "worker-a", password: "a-pw", permissions: workerPermissions(prefix, "A") },
  ];
  let dir: string;
  let logFile: string;
  let server: NatsServer;
  let admin: NatsConnection;
  let scheduler: NatsConnection;
  let worker: Worker | undefined;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "vmq-img-perm-"));
    logFile = join(dir, "nats.log");
    server = await NatsServer.start({
      config: [`log_file: ${JSON.stringify(logFile)}`, usersConfig(users)].join("\n"),
    });
    admin = await connectAs(server.url, "admin", "admin-pw", "admin");
    scheduler = await connectAs(server.url, "scheduler", "s-pw", "scheduler");
  });
  after(async () => {
    await worker?.drain().catch(() => undefined);
    await scheduler?.close();
    await admin?.close();
    await server?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it("a worker with only its rights fetches and verifies a pushed image; it cannot push one", async () => {
    // The worker provisions (the images bucket included), as it does on a fresh server.
    worker = await startUserWorker({
      url: server.url,
      prefix,
      host: "A",
      dir,
      user: "worker-a",
      password: "a-pw",
    });
    const file = join(dir, "base.img");
    const bytes = randomBytes(5 * 1024 * 1024 + 123); // several chunks and a short last one
    await writeFile(file, bytes);
    const info = await new ImageStore(scheduler, { prefix }).push(file, {
      name: "base",
      tag: "v1",
    });

    const client = new VmqClient(scheduler, { prefix, timeoutMs: 30_000 });
    const r = await client.send("A", {
      type: "vm.prepare",
      vmId: "img-perm-1",
      spec: { ...SPEC, imagePath: undefined, image: "base:v1" },
    });
    assert.equal(r.outcome.type, "vm.prepared", JSON.stringify(r.outcome));
    assert.ok(existsSync(join(dir, "A", "images", info.digest.slice(7))));
    assert.deepEqual(await loggedViolations(logFile, () => true), []);

    // The worker's credentials cannot plant an image.
    const asWorker = await connectAs(
      server.url,
      "worker-a",
      "a-pw",
      "attacker",
      workerInboxPrefix("A"),
    );
    try {
      await assert.rejects(
        new ImageStore(asWorker, { prefix }).push(file, { name: "evil", tag: "v1" }),
      );
    } finally {
      await asWorker.close().catch(() => undefined);
    }
    assert.ok((await loggedViolations(logFile, (l) => l.includes("attacker"))).length > 0);
  });
});
