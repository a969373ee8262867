/**
 * vm.export-disk through the command pipeline (no nats-server): a stopped or prepared VM's disk
 * goes to the disk sink and its outcome says where; a running VM is refused before anything is
 * read; a worker without a sink fails it with a code. The sink's own cutting into chunks too.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { describe, it } from "node:test";
import type { EventOf, ExportedDisk } from "../../../src/contracts/index.js";
import { exportChunkPrefix } from "../../../src/domain/index.js";
import type { DiskExport } from "../../../src/hypervisor/index.js";
import { rechunk, type DiskSink } from "../../../src/worker/images/disk-sink.js";
import { command, HOST, pipeline, SPEC } from "../../helpers/pipeline-fixture.js";

/** A sink that keeps what it was sent and answers as the real one does. */
function memorySink(): DiskSink & { sent: { vmId: string; bytes: Buffer }[] } {
  const sent: { vmId: string; bytes: Buffer }[] = [];
  return {
    sent,
    async send(vmId: string, commandId: string, disk: DiskExport): Promise<ExportedDisk> {
      const parts: Uint8Array[] = [];
      for await (const b of disk.bytes()) parts.push(b);
      const bytes = Buffer.concat(parts);
      sent.push({ vmId, bytes });
      const digest = `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
      const nuid = `${exportChunkPrefix(commandId)}00000000`;
      return { nuid, chunks: 1, size: bytes.length, digest, format: disk.format };
    },
  };
}

async function run(p: ReturnType<typeof pipeline>, c: Parameters<typeof command>[0]) {
  assert.deepEqual(await p.handler.handle(p.message(command(c))), { kind: "ack" });
}

describe("vm.export-disk", () => {
  it("a stopped VM: the disk goes to the sink, vm.disk-exported says where, the state stays", async () => {
    const disks = memorySink();
    const p = pipeline({ disks });
    await run(p, { type: "vm.prepare", vmId: "a", spec: SPEC });
    await run(p, { type: "vm.start", vmId: "a" });
    await run(p, { type: "vm.stop", vmId: "a" });
    const exp = command({ type: "vm.export-disk", vmId: "a", correlationId: "mv1" });
    assert.deepEqual(await p.handler.handle(p.message(exp)), { kind: "ack" });
    const history = await p.store.readVm(HOST, "a");
    const out = history.at(-1)?.event as EventOf<"vm.disk-exported">;
    assert.equal(out.type, "vm.disk-exported");
    assert.equal(out.state, "stopped");
    assert.equal(out.causationId, exp.commandId);
    assert.equal(out.correlationId, "mv1");
    assert.equal(disks.sent.length, 1);
    const bytes = disks.sent[0]!.bytes;
    assert.match(bytes.toString(), /placeholder[\s\S]*vmId: a/);
    assert.equal(out.disk.size, bytes.length);
    assert.equal(out.disk.format, "placeholder");
    assert.ok(out.disk.nuid.startsWith(exportChunkPrefix(exp.commandId)));
    assert.equal(p.streams.get("a").state, "stopped");
    assert.equal(p.streams.get("a").pending, null);
    assert.deepEqual(p.effects().at(-1), "exportDisk:a");
    // The same command again is a duplicate: nothing is sent twice.
    await p.handler.handle(p.message(exp, { delivery: 2 }));
    assert.equal(disks.sent.length, 1);
  });

  it("a prepared VM never started can be exported; it stays prepared", async () => {
    const disks = memorySink();
    const p = pipeline({ disks });
    await run(p, { type: "vm.prepare", vmId: "b", spec: SPEC });
    await run(p, { type: "vm.export-disk", vmId: "b" });
    assert.deepEqual((await p.history("b")).slice(-2), ["vm.command-accepted", "vm.disk-exported"]);
    assert.equal(p.streams.get("b").state, "prepared");
  });

  it("a running VM is refused before its disk is read (command::illegal-transition)", async () => {
    const disks = memorySink();
    const p = pipeline({ disks });
    await run(p, { type: "vm.prepare", vmId: "c", spec: SPEC });
    await run(p, { type: "vm.start", vmId: "c" });
    await run(p, { type: "vm.export-disk", vmId: "c" });
    const last = (await p.store.readVm(HOST, "c")).at(-1)?.event as EventOf<"vm.command-rejected">;
    assert.equal(last.type, "vm.command-rejected");
    assert.equal(last.code, "command::illegal-transition");
    assert.equal(disks.sent.length, 0);
    assert.ok(!p.effects().includes("exportDisk:c"));
  });

  it("a worker without a disk sink fails it with move::export-unavailable, state unchanged", async () => {
    const p = pipeline();
    await run(p, { type: "vm.prepare", vmId: "d", spec: SPEC });
    await run(p, { type: "vm.export-disk", vmId: "d" });
    const last = (await p.store.readVm(HOST, "d")).at(-1)?.event as EventOf<"vm.command-failed">;
    assert.equal(last.type, "vm.command-failed");
    assert.equal(last.code, "move::export-unavailable");
    assert.equal(last.state, "prepared");
  });

  it("a prepare from a move may take a vmId the view holds on the move's source, no other", async () => {
    const spec = { ...SPEC };
    const from = (fromHost: string) => ({
      kind: "move" as const,
      fromHost,
      toHost: HOST,
      moveId: "0123456789abcdef",
    });
    const p = pipeline({ ownerElsewhere: "src" });
    await run(p, { type: "vm.prepare", vmId: "m", spec, origin: from("src") });
    assert.equal(p.streams.get("m").state, "prepared");
    await run(p, { type: "vm.prepare", vmId: "n", spec, origin: from("other") });
    const last = (await p.store.readVm(HOST, "n")).at(-1)?.event as EventOf<"vm.command-rejected">;
    assert.equal(last.code, "vm::exists");
  });
});

describe("rechunk: exact chunk sizes whatever the reads", () => {
  async function* reads(sizes: number[]): AsyncGenerator<Uint8Array> {
    let n = 0;
    for (const s of sizes) {
      yield Uint8Array.from({ length: s }, () => n++ % 251);
      await Promise.resolve();
    }
  }
  it("cuts into pieces of the size, the last shorter, with the bytes in order", async () => {
    const out: Uint8Array[] = [];
    for await (const c of rechunk(reads([3, 10, 1, 0, 7]), 4)) out.push(c.slice());
    assert.deepEqual(
      out.map((c) => c.length),
      [4, 4, 4, 4, 4, 1],
    );
    const all = Buffer.concat(out);
    assert.deepEqual(
      [...all],
      Array.from({ length: 21 }, (_, i) => i % 251),
    );
  });
  it("an empty source gives no chunk", async () => {
    const out: Uint8Array[] = [];
    for await (const c of rechunk(reads([]), 4)) out.push(c);
    assert.equal(out.length, 0);
  });
});
