import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { silentLogger } from "../../../src/observability/logger.js";
import { KvViewWriter } from "../../../src/worker/nats/view-writer.js";

/** A record as the view holds it, with the fields the writer compares. */
const record = (lastEventSeq: number) => ({
  vmId: "a",
  host: "h1",
  state: "stopped",
  lastEventSeq,
  handle: null,
  pending: null,
  updatedAt: "2026-12-05T00:00:00.000Z",
});

function fakes(stored: { revision: number; lastEventSeq: number } | undefined) {
  const published: { subject: string; expected: number | undefined }[] = [];
  const gets: string[] = [];
  const publisher = {
    publish: (subject: string, _data: Uint8Array, o?: { expectedLastSubjectSeq?: number }) => {
      published.push({ subject, expected: o?.expectedLastSubjectSeq });
      return Promise.resolve({ seq: 100, stream: "KV_vmq-vms", duplicate: false });
    },
  };
  const kv = {
    get: (key: string) => {
      gets.push(key);
      return Promise.resolve(
        stored && {
          operation: "PUT",
          revision: stored.revision,
          json: () => record(stored.lastEventSeq),
        },
      );
    },
  };
  return { publisher, kv, published, gets };
}

describe("KvViewWriter", () => {
  it("a replayed VM whose record is current is read once and not written", async () => {
    const f = fakes({ revision: 7, lastEventSeq: 5 });
    const w = new KvViewWriter(f.publisher, f.kv as never, "vmq-vms", "h1", silentLogger());
    w.expectStored(["a"]);
    w.write("a", JSON.stringify(record(5)), 5);
    await w.flush();
    assert.deepEqual(f.gets, ["h1.a"]);
    assert.deepEqual(f.published, []);
  });

  it("a replayed VM whose record lags is written on the revision it read, at once", async () => {
    const f = fakes({ revision: 7, lastEventSeq: 3 });
    const w = new KvViewWriter(f.publisher, f.kv as never, "vmq-vms", "h1", silentLogger());
    w.expectStored(["a"]);
    w.write("a", JSON.stringify(record(5)), 5);
    await w.flush();
    assert.deepEqual(f.published, [{ subject: "$KV.vmq-vms.h1.a", expected: 7 }]);
    // Its next write uses the revision of its own write, without reading again.
    w.write("a", JSON.stringify(record(6)), 6);
    await w.flush();
    assert.deepEqual(f.gets, ["h1.a"]);
    assert.deepEqual(f.published.at(-1), { subject: "$KV.vmq-vms.h1.a", expected: 100 });
  });

  it("a new VM is written blind (expected revision 0), without a read", async () => {
    const f = fakes(undefined);
    const w = new KvViewWriter(f.publisher, f.kv as never, "vmq-vms", "h1", silentLogger());
    w.write("a", JSON.stringify(record(1)), 1);
    await w.flush();
    assert.deepEqual(f.gets, []);
    assert.deepEqual(f.published, [{ subject: "$KV.vmq-vms.h1.a", expected: 0 }]);
  });
});
