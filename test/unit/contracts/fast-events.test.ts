/**
 * The replay's fast path for events (contracts/fast-events.ts) against the zod schema it stands
 * in for: whatever it accepts, zod accepts with an equal result; whatever zod refuses, the
 * replay's upcast() refuses; and the common valid shapes do take the fast path.
 */
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { describe, it } from "node:test";
import fc from "fast-check";
import { fastEvent, VmEvent } from "../../../src/contracts/index.js";
import { upcast } from "../../../src/event-store/upcasters.js";
import { isVmqError } from "../../../src/lib/errors.js";

const id = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9_-]{0,20}$/);
const time = fc
  .date({ min: new Date("2000-01-01"), max: new Date("2100-01-01"), noInvalidDate: true })
  .map((d) => d.toISOString());
const commandId = fc.stringMatching(/^[\x20-\x7e]{1,40}$/);
const state = fc.constantFrom("prepared", "running", "stopped", "suspended", "unknown");
const network = fc.oneof(
  fc.constant({ type: "user" }),
  fc.constant({ type: "none" }),
  fc.record({ type: fc.constant("tap"), bridge: fc.constantFrom("br0", "virbr-1") }),
  fc.record({ type: fc.constant("vnic"), name: fc.constantFrom("vnic0", "net.1") }),
);
const handle = fc.record(
  {
    id,
    name: fc.string(),
    backend: fc.constantFrom("qemu", "propolis", "noop"),
    workDir: fc.string(),
    pid: fc.integer({ min: 1, max: 4_000_000 }),
    qmpSocket: fc.string(),
    vcpus: fc.integer({ min: 1, max: 64 }),
    memoryMb: fc.integer({ min: 1, max: 1 << 20 }),
    diskGb: fc.integer({ min: 1, max: 100 }),
    network,
    sshHostPort: fc.integer({ min: 1, max: 65535 }),
    macAddr: fc.constantFrom("52:54:00:12:34:56", "02:00:00:ab:cd:ef"),
    uefi: fc.boolean(),
    accelerator: fc.constantFrom("kvm", "tcg"),
  },
  { requiredKeys: ["id", "name", "backend", "workDir", "vcpus", "memoryMb", "network", "uefi"] },
);
const spec = fc.record(
  {
    name: fc.oneof(fc.string({ minLength: 1, maxLength: 130 }), fc.constant("a\u0000b")),
    backend: fc.constantFrom("qemu", "propolis", "noop"),
    imagePath: fc.constantFrom("/images/base.qcow2", "a/../b", "..", "/x/..", "/a..b/c", "x\u0000"),
    vcpus: fc.integer({ min: 1, max: 64 }),
    memoryMb: fc.integer({ min: 64, max: 1048576 }),
    diskGb: fc.integer({ min: 1, max: 65536 }),
    network,
    cloudInit: fc.constant({ userData: "", userDataDigest: `sha256:${"0".repeat(64)}` }),
    ssh: fc.constant({ user: "root", publicKey: "ssh-ed25519 AAAA" }),
    uefi: fc.boolean(),
  },
  { requiredKeys: ["name", "imagePath", "vcpus", "memoryMb", "network", "uefi"] },
);
const base = {
  version: fc.constant(1),
  eventId: fc.uuid(),
  host: id,
  at: time,
  causationId: fc.option(commandId, { nil: null }),
  correlationId: fc.option(fc.string({ maxLength: 128 }), { nil: null }),
  state,
  reconciled: fc.boolean(),
};
const baseRequired = ["version", "eventId", "host", "at", "causationId", "state"] as const;
const command = fc.oneof(
  fc.record({
    type: fc.constant("vm.prepare"),
    version: fc.constant(1),
    commandId,
    issuedAt: time,
    spec,
  }),
  fc.record(
    {
      type: fc.constantFrom("vm.start", "vm.suspend", "vm.resume"),
      version: fc.constant(1),
      commandId,
      issuedAt: time,
      correlationId: fc.string({ minLength: 1, maxLength: 128 }),
      expectedVersion: fc.nat(),
      notAfter: time,
    },
    { requiredKeys: ["type", "version", "commandId", "issuedAt"] },
  ),
  fc.record({
    type: fc.constant("vm.stop"),
    version: fc.constant(1),
    commandId,
    issuedAt: time,
    timeoutMs: fc.integer({ min: 0, max: 3_600_000 }),
    force: fc.constantFrom("never", "after-timeout", "now"),
  }),
  fc.record({
    type: fc.constant("vm.destroy"),
    version: fc.constant(1),
    commandId,
    issuedAt: time,
    timeoutMs: fc.integer({ min: 0, max: 3_600_000 }),
  }),
);
const vmId = id;

/** Valid events of the shapes the fast path takes. */
const valid = vmId.chain((vm) =>
  fc.oneof(
    fc.record(
      {
        type: fc.constant("vm.command-accepted"),
        ...base,
        vmId: fc.constant(vm),
        command: command.map((c) => ({ ...c, vmId: vm })),
        deadline: time,
      },
      { requiredKeys: [...baseRequired, "type", "vmId", "command", "deadline"] },
    ),
    fc.record(
      {
        type: fc.constantFrom("vm.started", "vm.suspended", "vm.resumed"),
        ...base,
        vmId: fc.constant(vm),
        handle,
      },
      { requiredKeys: [...baseRequired, "type", "vmId"] },
    ),
    fc.record(
      {
        type: fc.constant("vm.stopped"),
        ...base,
        vmId: fc.constant(vm),
        handle,
        how: fc.constantFrom("acpi", "sigterm", "sigkill", "forced", "guest"),
      },
      { requiredKeys: [...baseRequired, "type", "vmId", "how"] },
    ),
    fc.record(
      { type: fc.constant("vm.prepared"), ...base, vmId: fc.constant(vm), handle, spec },
      { requiredKeys: [...baseRequired, "type", "vmId", "handle"] },
    ),
    fc.record(
      { type: fc.constant("vm.destroyed"), ...base, vmId: fc.constant(vm) },
      { requiredKeys: [...baseRequired, "type", "vmId"] },
    ),
  ),
);

/** Any JSON value, including the near misses a mutation should try. */
const oddValue = fc.oneof(
  fc.jsonValue({ maxDepth: 2 }),
  fc.constantFrom(
    "",
    "x".repeat(300),
    "2026-02-30T00:00:00Z",
    "2026-01-01 00:00:00Z",
    "a.b",
    "_x",
    -1,
    0,
    1.5,
    2 ** 53,
    3_600_001,
    63,
    65,
    129,
    257,
    65537,
    1048577,
    65536,
    null,
    [],
    {},
    "vm.prepare",
    "running",
    "qemu",
  ),
);

type Json = Record<string, unknown>;
/** Every path to an object inside `o` (the event, its command, handle, network). */
function objectsIn(o: Json, out: Json[] = []): Json[] {
  out.push(o);
  for (const v of Object.values(o))
    if (typeof v === "object" && v !== null && !Array.isArray(v)) objectsIn(v as Json, out);
  return out;
}

/** A valid event with one to three changes: a key removed, set to an odd value, or added. */
const mutated = fc
  .tuple(
    valid,
    fc.array(
      fc.tuple(fc.nat(), fc.nat(), fc.constantFrom("delete", "set", "add"), oddValue, fc.string()),
      { minLength: 1, maxLength: 3 },
    ),
  )
  .map(([event, changes]) => {
    const e = structuredClone(event) as Json;
    for (const [which, key, op, value, name] of changes) {
      const targets = objectsIn(e);
      const t = targets[which % targets.length] as Json;
      const ks = Object.keys(t);
      const k = ks[key % Math.max(1, ks.length)];
      if (op === "add") t[name || "extra"] = structuredClone(value);
      else if (k === undefined) continue;
      else if (op === "delete") delete t[k];
      else t[k] = structuredClone(value);
    }
    return e;
  });

/** The property: fast path ⇒ zod accepts with an equal result; upcast ⇔ zod. */
function agrees(e: unknown): void {
  const json = JSON.stringify(e);
  const zod = VmEvent.safeParse(JSON.parse(json));
  const fast = fastEvent(JSON.parse(json));
  if (fast !== undefined) {
    assert.ok(zod.success, `fast path took what zod refuses: ${json}`);
    assert.deepEqual(fast, zod.data);
  }
  let read: unknown;
  try {
    read = upcast(JSON.parse(json));
  } catch (err) {
    assert.ok(isVmqError(err, "event-store::unreadable-event"), String(err));
    assert.ok(!zod.success, `upcast refused what zod accepts: ${json}`);
    return;
  }
  assert.ok(zod.success, `upcast took what zod refuses: ${json}`);
  assert.deepEqual(read, zod.data);
}

describe("fast event checks", () => {
  it("take the common valid shapes, with zod's result", () => {
    fc.assert(
      fc.property(valid, (e) => {
        const fast = fastEvent(JSON.parse(JSON.stringify(e)));
        const json = JSON.stringify(e);
        // Specs with cloud-init or ssh are zod's; so are the invalid names and paths above.
        const ev = e as { spec?: Json; command?: { spec?: Json } };
        const sp = ev.spec ?? ev.command?.spec;
        const zodOnly =
          sp !== undefined &&
          (sp.cloudInit !== undefined ||
            sp.ssh !== undefined ||
            (sp.name as string).length > 128 ||
            (sp.name as string).includes("\u0000") ||
            (sp.imagePath as string).includes("\u0000") ||
            (sp.imagePath as string).split("/").includes(".."));
        if (!zodOnly) assert.ok(fast, `not on the fast path: ${json}`);
        if (fast) assert.deepEqual(fast, VmEvent.parse(e));
        else agrees(e);
      }),
      { numRuns: 2_000 },
    );
  });

  it("never take what zod refuses, and upcast() accepts exactly what zod accepts", () => {
    fc.assert(fc.property(mutated, agrees), { numRuns: 20_000 });
  });

  it("agree with zod on every event of the fixtures, mutated or not", () => {
    const dir = new URL("../../fixtures/event-streams/", import.meta.url);
    const events = readdirSync(dir)
      .filter((f) => f.endsWith(".jsonl"))
      .flatMap((f) =>
        readFileSync(new URL(f, dir), "utf8")
          .split("\n")
          .filter((l) => l.trim() !== "")
          .map((l) => (JSON.parse(l) as { event: Json }).event),
      );
    assert.ok(events.length > 0);
    for (const e of events) agrees(e);
    fc.assert(
      fc.property(fc.constantFrom(...events), fc.nat(), oddValue, (e, k, v) => {
        const c = structuredClone(e);
        const ks = Object.keys(c);
        c[ks[k % ks.length] as string] = structuredClone(v);
        agrees(c);
      }),
      { numRuns: 5_000 },
    );
  });

  it("refuse with a code, not a TypeError, a type or version String() cannot print", () => {
    // Found by the property below: {"toString": null} made String() throw inside upcast.
    for (const odd of [{ toString: null }, { valueOf: null, toString: null }, [null]]) {
      const e = { type: odd, version: odd, eventId: odd, vmId: "web-1", host: "h1" };
      assert.throws(
        () => upcast(e),
        (err: unknown) => isVmqError(err, "event-store::unreadable-event"),
      );
    }
  });

  it("leave to zod what it fills in or drops: a missing default, an unknown key", () => {
    const e = {
      type: "vm.started",
      version: 1,
      eventId: "e-1",
      vmId: "web-1",
      host: "h1",
      at: "2026-11-25T10:00:01.234Z",
      causationId: "c-1",
      state: "running",
      handle: { id: "web-1", name: "w", backend: "noop", workDir: "/w", network: { type: "user" } },
    };
    assert.equal(fastEvent(structuredClone(e)), undefined);
    const read = upcast(structuredClone(e));
    assert.equal(read.type === "vm.started" && read.handle?.vcpus, 1);
    assert.equal(fastEvent({ ...e, extra: 1 }), undefined);
    assert.equal("extra" in upcast({ ...e, extra: 1 }), false);
  });
});
