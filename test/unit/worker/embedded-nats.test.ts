import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { portsFileUrl } from "../../../src/worker/nats/embedded-nats.js";

describe("portsFileUrl (how the embedded NATS and the test helper learn the server's URL)", () => {
  it("is undefined until a whole ports file is there, then its first client URL", async () => {
    const dir = await mkdtemp(join(tmpdir(), "vmq-ports-"));
    try {
      assert.equal(await portsFileUrl(dir), undefined, "no file yet");
      assert.equal(await portsFileUrl(join(dir, "missing")), undefined, "no directory yet");
      const file = join(dir, "nats-server_123.ports");
      await writeFile(file, '{"nats":["nats://127.0.0.1:4');
      assert.equal(await portsFileUrl(dir), undefined, "half-written: read again later");
      await writeFile(file, '{"nats":["nats://127.0.0.1:4333"],"monitoring":[]}');
      assert.equal(await portsFileUrl(dir), "nats://127.0.0.1:4333");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
