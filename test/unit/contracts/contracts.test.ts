import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  CommandId,
  HostId,
  VmHandle,
  VmId,
  VmView,
  commandVmToken,
  names,
  parseCommand,
} from "../../../src/contracts/index.js";

describe("identifiers", () => {
  it("accepts the documented alphabet and refuses everything that could escape a subject or path", () => {
    for (const ok of ["a", "web-1", "A_b-9", "x".repeat(64)])
      assert.ok(VmId.safeParse(ok).success, ok);
    for (const bad of [
      "",
      "_a",
      "-a",
      "a.b",
      "a b",
      "a*",
      "a>",
      "a/b",
      "..",
      "x".repeat(65),
      "é",
    ]) {
      assert.ok(!VmId.safeParse(bad).success, JSON.stringify(bad));
      assert.ok(!HostId.safeParse(bad).success, JSON.stringify(bad));
    }
  });
  it("commandIds are 1-128 printable ASCII", () => {
    // Spaces are printable ASCII, at the ends too (the contract says no more than that).
    for (const ok of ["01J9ZX", "a b", " a", "a ", "x".repeat(128), "deploy:42/x"])
      assert.ok(CommandId.safeParse(ok).success, ok);
    for (const bad of ["", "x".repeat(129), "tab\t", "é", "nl\n", "nul\u0000"])
      assert.ok(!CommandId.safeParse(bad).success, JSON.stringify(bad));
  });
});

describe("parseCommand", () => {
  const good = {
    type: "vm.stop",
    version: 1,
    commandId: "c1",
    vmId: "web-1",
    issuedAt: "2026-11-25T10:00:00Z",
  };
  it("applies defaults", () => {
    const r = parseCommand(JSON.stringify(good), "web-1");
    assert.ok(r.ok);
    assert.equal(r.command.type, "vm.stop");
    if (r.command.type === "vm.stop") {
      assert.equal(r.command.timeoutMs, 30000);
      assert.equal(r.command.force, "after-timeout");
    }
  });
  it("names the failing field in a readable message", () => {
    const r = parseCommand(
      JSON.stringify({
        ...good,
        type: "vm.prepare",
        spec: { name: "w", imagePath: "/i", vcpus: 100, memoryMb: 256 },
      }),
      "web-1",
    );
    assert.ok(!r.ok);
    assert.equal(r.code, "command::invalid");
    assert.match(r.message, /spec\.vcpus/);
    assert.equal(r.commandId, "c1");
  });
  it("gives each kind of bad input its own code", () => {
    const cases: [string | Uint8Array, string | undefined, string][] = [
      ["{not json", "web-1", "command::not-json"],
      [new Uint8Array([0xff, 0xfe, 0x7b]), "web-1", "command::not-json"],
      [JSON.stringify({ ...good, padding: "x".repeat(70_000) }), "web-1", "command::too-large"],
      [JSON.stringify([1, 2]), "web-1", "command::invalid"],
      [JSON.stringify({ ...good, vmId: "other" }), "web-1", "command::subject-mismatch"],
      [JSON.stringify({ ...good, type: "vm.explode" }), "web-1", "command::unknown-type"],
      [JSON.stringify({ ...good, type: "constructor" }), "web-1", "command::unknown-type"],
      [JSON.stringify({ ...good, version: 2 }), "web-1", "command::unsupported-version"],
      [JSON.stringify({ ...good, timeoutMs: -1 }), "web-1", "command::invalid"],
    ];
    for (const [raw, subj, code] of cases) {
      const r = parseCommand(raw, subj);
      assert.ok(!r.ok, `${code} expected`);
      assert.equal(r.code, code);
      assert.ok(r.message.length > 10);
    }
  });
});

describe("VmHandle and view records", () => {
  it("old handle records without newer fields still parse, with defaults", () => {
    const old = { id: "vm1", name: "web", backend: "qemu", workDir: "/var/lib/vmq/vm1" };
    const h = VmHandle.parse(old);
    assert.equal(h.vcpus, 1);
    assert.equal(h.memoryMb, 1024);
    assert.deepEqual(h.network, { type: "user" });
    assert.equal(h.uefi, false);
    const v = VmView.parse({
      vmId: "vm1",
      host: "h1",
      state: "running",
      lastEventSeq: 4,
      handle: old,
      updatedAt: "2026-11-25T10:00:00Z",
    });
    assert.equal(v.pending, null);
  });
});

describe("names", () => {
  it("derives every stream, bucket and subject from the prefix", () => {
    const n = names("acme");
    assert.equal(n.commandsStream, "ACME_COMMANDS");
    assert.equal(n.eventsStream, "ACME_EVENTS");
    assert.equal(n.dlqStream, "ACME_DLQ");
    assert.equal(n.vmsBucket, "acme-vms");
    assert.equal(n.hostsBucket, "acme-hosts");
    assert.equal(n.cmd("h1", "web-1"), "acme.cmd.h1.web-1");
    assert.equal(n.evt("h1", "web-1"), "acme.evt.h1.web-1");
    assert.equal(n.api("h1", "web-1", "guest-ip"), "acme.api.h1.web-1.guest-ip");
    assert.equal(names().cmdFilter("h1"), "vmq.cmd.h1.>");
  });
});

describe("commandVmToken", () => {
  it("is everything after <prefix>.cmd.<host>., extra tokens included", () => {
    assert.equal(commandVmToken("vmq.cmd.h1.web-1"), "web-1");
    assert.equal(commandVmToken("vmq.cmd.h1.web-1.x.y"), "web-1.x.y");
    assert.equal(commandVmToken("vmq.cmd.h1."), "");
    assert.equal(commandVmToken("vmq.cmd.h1"), "");
    assert.equal(commandVmToken(""), "");
  });
});
