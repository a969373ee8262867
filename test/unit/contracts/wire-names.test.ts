/**
 * Names on the wire beyond contracts.test.ts: identifier errors that say which identifier,
 * isValidId and the prefix rule, the console and DLQ subjects, parseSubject, commandVmToken
 * with a one-letter prefix, and the permissions without provisioning and as a config value.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import {
  CommandId,
  HostId,
  INVALID_VM_TOKEN,
  Prefix,
  VmId,
  commandVmToken,
  isValidId,
  names,
  parseSubject,
  VmTombstone,
} from "../../../src/contracts/index.js";
import { permissionsConfig, workerPermissions } from "../../../src/contracts/permissions.js";

const firstMessage = (r: { error?: { issues: { message: string }[] } }) =>
  r.error?.issues[0]?.message ?? "(valid)";

describe("identifier errors say which identifier and its rule", () => {
  it("vmId and host", () => {
    assert.match(firstMessage(VmId.safeParse("_a")), /^vmId must be 1-64 characters/);
    assert.match(firstMessage(HostId.safeParse("a.b")), /^host must be 1-64 characters/);
    assert.equal(firstMessage(VmId.safeParse(7)), "vmId must be a string");
    assert.equal(firstMessage(HostId.safeParse(null)), "host must be a string");
  });
  it("commandId", () => {
    assert.equal(firstMessage(CommandId.safeParse(7)), "commandId must be a string");
    assert.match(firstMessage(CommandId.safeParse("")), /^commandId must be 1-128 printable/);
  });
  it("prefix: lower-case letters and digits, starting with a letter, at most 32", () => {
    for (const ok of ["a", "vmq", "acme2", "a".repeat(32)])
      assert.equal(Prefix.safeParse(ok).success, true, ok);
    for (const bad of ["", "2a", "Acme", "a-b", "a.b", "a_b", "a".repeat(33)])
      assert.equal(Prefix.safeParse(bad).success, false, JSON.stringify(bad));
    assert.match(firstMessage(Prefix.safeParse("A")), /^prefix must be 1-32 lower-case/);
  });
});

describe("isValidId", () => {
  it("is the vmId/host rule for strings, and false for anything else", () => {
    assert.equal(isValidId("web-1"), true);
    for (const bad of ["", "a.b", "_a", "x".repeat(65), 42, undefined, null, ["a"]])
      assert.equal(isValidId(bad), false, JSON.stringify(bad));
  });
});

describe("subjects", () => {
  const n = names("acme");

  it("a VM's console subject is under its host's console permission", () => {
    assert.equal(n.consoleSubject("h1", "web-1"), "acme.console.h1.web-1");
    assert.ok(
      workerPermissions("acme", "h1").publish.allow.includes("acme.console.h1.>"),
      "the worker of h1 may publish on acme.console.h1.>",
    );
  });

  it("bad input without a readable vmId is dead-lettered under a token no VM can have", () => {
    assert.equal(isValidId(INVALID_VM_TOKEN), false);
    assert.match(INVALID_VM_TOKEN, /^[^.*> ]+$/, "one subject token");
    const ops = readFileSync(join(import.meta.dirname, "../../../docs/operations.md"), "utf8");
    assert.ok(
      ops.includes(`\`${INVALID_VM_TOKEN}\` when no vmId was readable`),
      "docs/operations.md names it",
    );
  });

  it("parseSubject splits prefix, kind, host, vmId and the rest; fewer than four tokens is not one", () => {
    assert.deepEqual(parseSubject("acme.dlq.h1.web-1"), {
      prefix: "acme",
      kind: "dlq",
      host: "h1",
      vmId: "web-1",
      rest: [],
    });
    assert.deepEqual(parseSubject("acme.api.h1.web-1.state")?.rest, ["state"]);
    assert.equal(parseSubject("acme.dlq.h1"), undefined);
    assert.equal(parseSubject(""), undefined);
  });

  it("commandVmToken counts dots from the start, whatever the tokens' lengths", () => {
    assert.equal(commandVmToken("a.cmd.h.web-1"), "web-1");
    assert.equal(commandVmToken(names("a").cmd("h1", "v")), "v");
    assert.equal(commandVmToken(".cmd.h1.v"), "v");
  });
});

describe("permissions", () => {
  it("without provisioning: the same list minus the stream creations and limit updates", () => {
    const all = workerPermissions("vmq", "h1");
    const fixed = workerPermissions("vmq", "h1", { provision: false });
    assert.deepEqual(
      fixed.publish.allow,
      all.publish.allow.filter((s) => !/\.STREAM\.(CREATE|UPDATE)\./.test(s)),
    );
    assert.ok(all.publish.allow.length > fixed.publish.allow.length);
  });

  it("compaction: purging the events stream, or deleting from it, only when granted", () => {
    for (const right of [
      "$JS.API.STREAM.PURGE.VMQ_EVENTS",
      "$JS.API.STREAM.MSG.DELETE.VMQ_EVENTS",
    ]) {
      assert.equal(workerPermissions("vmq", "h1").publish.allow.includes(right), false, right);
      const granted = workerPermissions("vmq", "h1", { compaction: true }).publish.allow;
      assert.ok(granted.includes(right), right);
    }
  });

  it("a tombstone's digests are 16 lower-case hex digits, and the error says so", () => {
    const t = {
      version: 1,
      vmId: "a",
      host: "h1",
      destroyedAt: "2026-01-01T00:00:00.000Z",
      compactedAt: "2026-01-02T00:00:00.000Z",
      lastEventSeq: 3,
      seen: ["0123456789abcdef"],
    };
    assert.equal(VmTombstone.safeParse(t).success, true);
    const bad = VmTombstone.safeParse({ ...t, seen: ["0123456789ABCDEF"] });
    assert.equal(firstMessage(bad), "16 lower-case hex digits");
  });

  it("as a nats-server configuration value: JSON of the same sets", () => {
    const p = workerPermissions("vmq", "h1");
    assert.deepEqual(JSON.parse(permissionsConfig(p)), p);
  });
});
