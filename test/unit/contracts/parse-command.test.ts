/**
 * parseCommand at its edges: the size limit counted in bytes whatever form the command comes
 * in, strict UTF-8, bodies that are JSON but not objects, what a failure salvages (vmId,
 * commandId, type: bounded, and only when they are strings), and messages that name each
 * failing field with its rule. Also reading events: upcasting and what an outcome is.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { z } from "zod";
import {
  MAX_COMMAND_BYTES,
  describeIssues,
  isOutcome,
  parseCommand,
  upcastEvent,
  type ParseResult,
  type Upcaster,
  type VmEvent,
} from "../../../src/contracts/index.js";

const enc = new TextEncoder();
const start = {
  type: "vm.start",
  version: 1,
  commandId: "c1",
  vmId: "web-1",
  issuedAt: "2026-11-25T10:00:00Z",
};
const spec = { name: "w", imagePath: "/i.qcow2", vcpus: 1, memoryMb: 256 };

/** The failure's fields but its message ({ ok: true } when it parsed), for one comparison. */
function failure(r: ParseResult): Record<string, unknown> {
  if (r.ok) return { ok: true };
  const { ok: _ok, message: _message, ...rest } = r;
  return rest;
}
const message = (r: ParseResult) => (r.ok ? "(ok)" : r.message);

/** A start command padded (in an ignored field) to exactly `bytes` bytes of UTF-8 JSON. */
function startOfSize(bytes: number, pad = "x"): string {
  const empty = JSON.stringify({ ...start, padding: "" });
  const unit = enc.encode(pad).length;
  const fill = bytes - enc.encode(empty).length;
  assert.equal(fill % unit, 0, "the padding fills the size exactly");
  const s = JSON.stringify({ ...start, padding: pad.repeat(fill / unit) });
  assert.equal(enc.encode(s).length, bytes);
  return s;
}

describe("parseCommand: the size limit", () => {
  it("is 64 KiB of UTF-8, inclusive, for a string as for bytes", () => {
    const atLimit = startOfSize(MAX_COMMAND_BYTES);
    assert.equal(parseCommand(atLimit, "web-1").ok, true);
    assert.equal(parseCommand(enc.encode(atLimit), "web-1").ok, true);
    const over = startOfSize(MAX_COMMAND_BYTES + 1);
    assert.equal(failure(parseCommand(over, "web-1")).code, "command::too-large");
    assert.equal(failure(parseCommand(enc.encode(over), "web-1")).code, "command::too-large");
  });

  it("counts bytes, not characters: two-byte characters reach it at half the length", () => {
    const wide = startOfSize(MAX_COMMAND_BYTES + 2, "é");
    assert.ok(wide.length < MAX_COMMAND_BYTES, "fewer characters than the limit");
    const r = parseCommand(wide, "web-1");
    assert.equal(failure(r).code, "command::too-large");
    assert.equal(message(r), `command is ${MAX_COMMAND_BYTES + 2} bytes; the limit is 65536`);
  });

  it("bytes well under the limit are not measured as anything longer", () => {
    const bytes = enc.encode(startOfSize(30_000));
    assert.equal(parseCommand(bytes, "web-1").ok, true);
  });
});

describe("parseCommand: what is not a command object", () => {
  it("bytes that are not UTF-8 are not JSON, even inside a string a command may hold", () => {
    const json = JSON.stringify({ ...start, correlationId: "deploy-@" });
    const bytes = enc.encode(json);
    bytes[json.indexOf("@")] = 0xff; // a lone continuation byte: invalid UTF-8
    assert.deepEqual(failure(parseCommand(bytes, "web-1")), {
      code: "command::not-json",
      vmId: "web-1",
    });
  });

  it("JSON that is not an object: a number, a string, null", () => {
    for (const body of ["42", '"vm.start"', "null", "true"]) {
      const r = parseCommand(body, "web-1");
      assert.deepEqual(failure(r), { code: "command::invalid", vmId: "web-1" }, body);
      assert.equal(message(r), "command must be a JSON object", body);
    }
  });
});

describe("parseCommand: what a failure salvages", () => {
  it("the subject's vmId, only when it is a valid one", () => {
    assert.equal(failure(parseCommand("{oops", "web-1")).vmId, "web-1");
    assert.equal(Object.hasOwn(failure(parseCommand("{oops", "a.b")), "vmId"), false);
    assert.equal(Object.hasOwn(failure(parseCommand("{oops")), "vmId"), false);
  });

  it("commandId and type when they are strings, cut to 256 and 64 characters", () => {
    const long = JSON.stringify({ ...start, commandId: "c".repeat(300), type: "t".repeat(100) });
    assert.deepEqual(failure(parseCommand(long, "web-1")), {
      code: "command::unknown-type",
      vmId: "web-1",
      commandId: "c".repeat(256),
      type: "t".repeat(64),
    });
    const numbers = JSON.stringify({ ...start, commandId: 7, type: 8 });
    assert.deepEqual(failure(parseCommand(numbers, "web-1")), {
      code: "command::unknown-type",
      vmId: "web-1",
    });
    const known = JSON.stringify({ ...start, version: 3 });
    assert.deepEqual(failure(parseCommand(known, "web-1")), {
      code: "command::unsupported-version",
      vmId: "web-1",
      commandId: "c1",
      type: "vm.start",
    });
  });

  it("a type that only looks like a known one (an array) is unknown", () => {
    const r = parseCommand(JSON.stringify({ ...start, type: ["vm.start"] }), "web-1");
    assert.equal(failure(r).code, "command::unknown-type");
  });

  it("without a subject there is nothing to match the body's vmId against", () => {
    const r = parseCommand(JSON.stringify(start));
    assert.equal(r.ok, true, message(r));
  });
});

describe("validation messages", () => {
  it("name at most five failing fields, separated by '; '", () => {
    const bad = {
      ...start,
      type: "vm.prepare",
      issuedAt: "yesterday",
      spec: { name: "", imagePath: "", vcpus: 0, memoryMb: 1, diskGb: 0, uefi: "no" },
    };
    const m = message(parseCommand(JSON.stringify(bad), "web-1"));
    const fields = m.replace(/^invalid vm\.prepare: /, "").split("; ");
    assert.equal(fields.length, 5, m);
    assert.deepEqual(
      fields.map((f) => f.split(":")[0]),
      ["issuedAt", "spec.name", "spec.imagePath", "spec.vcpus", "spec.memoryMb"],
    );
  });

  it("an issue of the whole value is named (body)", () => {
    const r = z.object({ a: z.string() }).safeParse(5);
    assert.equal(r.success, false);
    if (!r.success) assert.match(describeIssues(r.error), /^\(body\): \S/);
  });

  it("each rule of a VM spec says what it wants", () => {
    const cases: [object, string, RegExp][] = [
      [{ network: { type: "tap", bridge: "-br0" } }, "spec.network.bridge", /interface name/],
      [{ name: "a\u0000b" }, "spec.name", /NUL/],
      [{ cloudInit: { userData: "", hostname: "-bad-" } }, "spec.cloudInit.hostname", /DNS/],
      [{ cloudInit: { userData: "", instanceId: "a b" } }, "spec.cloudInit.instanceId", /1-128/],
      [{ ssh: { user: "Root", publicKey: "ssh-ed25519 AAAA" } }, "spec.ssh.user", /POSIX user/],
      [{ ssh: { user: "root", publicKey: "not a key" } }, "spec.ssh.publicKey", /OpenSSH/],
      [{ imagePath: "../etc/shadow" }, "spec.imagePath", /\.\. path segments/],
    ];
    for (const [change, field, rule] of cases) {
      const body = { ...start, type: "vm.prepare", spec: { ...spec, ...change } };
      const m = message(parseCommand(JSON.stringify(body), "web-1"));
      const said = m.split("; ").find((f) => f.startsWith(`${field}: `)) ?? m;
      assert.match(said, rule, `${field}: ${m}`);
    }
  });
});

describe("reading events", () => {
  const started = {
    type: "vm.started",
    version: 1,
    eventId: "e-1",
    vmId: "web-1",
    host: "h1",
    at: "2026-11-25T10:00:01.234Z",
    causationId: "c-1",
    correlationId: null,
    state: "running",
  };

  it("a cycle in the upcaster table ends, unread, instead of looping", () => {
    let calls = 0;
    const cycle: Record<string, Upcaster> = {
      "vm.started@0": (e) => (calls++, { ...e, version: 0 }),
    };
    const r = upcastEvent({ ...started, version: 0 }, cycle);
    assert.equal(r.ok, false);
    assert.ok(calls >= 1 && calls <= 16, `applied ${calls} times`);
  });

  it("says which rule the event breaks", () => {
    const r = upcastEvent({ ...started, version: 2 });
    assert.equal(r.ok, false);
    if (!r.ok)
      assert.equal(
        r.message,
        "event e-1 (vm.started v2) cannot be read: Invalid input: expected 1",
      );
  });

  it("an outcome is any event of a command but its intent", () => {
    assert.equal(isOutcome(started as VmEvent), true);
    assert.equal(isOutcome({ ...started, type: "vm.command-accepted" } as VmEvent), false);
    // A tombstone restored onto a VM's subject carries no command's outcome.
    assert.equal(isOutcome({ ...started, type: "vm.tombstoned" } as VmEvent), false);
  });
});
