/** Tombstones: what a destroyed VM leaves once its events are purged, and a VM used again. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { VmEvent as VmEventSchema, VmTombstone } from "../../../src/contracts/index.js";
import {
  commandDigest,
  decide,
  evolve,
  hasSeen,
  isForgettable,
  tombstonedEvent,
  tombstoneOf,
  vmFromTombstone,
  type Vm,
} from "../../../src/domain/index.js";
import { HANDLE as handle, NOW, SPEC as spec, cmd, given } from "../../helpers/decider-spec.js";

/** The reference 64-bit FNV-1a, with BigInt, to check the two-lane version against. */
function fnv1a64(s: string): string {
  let h = 0xcbf29ce484222325n;
  for (let i = 0; i < s.length; i++) {
    h ^= BigInt(s.charCodeAt(i));
    h = (h * 0x100000001b3n) & 0xffffffffffffffffn;
  }
  return h.toString(16).padStart(16, "0");
}

/** A VM prepared and destroyed through the decider; returns it and the commands it ran. */
function destroyedVm(): { vm: Vm; ids: string[] } {
  let vm = given([]).vm;
  let seq = 0;
  const ids: string[] = [];
  for (const c of [cmd({ type: "vm.prepare", spec }), cmd({ type: "vm.destroy" })]) {
    const d = decide(c, vm, { now: NOW });
    assert.equal(d.kind, "accept");
    if (d.kind !== "accept") throw new Error("not accepted");
    vm = evolve(vm, d.event, ++seq);
    const out = {
      ...d.event,
      type: c.type === "vm.prepare" ? "vm.prepared" : "vm.destroyed",
      eventId: `${c.commandId}:o`,
      state: c.type === "vm.prepare" ? "prepared" : "destroyed",
      ...(c.type === "vm.prepare" ? { handle } : {}),
    } as unknown as VmEvent;
    vm = evolve(vm, out, ++seq);
    ids.push(c.commandId);
  }
  return { vm, ids };
}
type VmEvent = Parameters<typeof evolve>[1];

describe("commandDigest", () => {
  it("is 64-bit FNV-1a as 16 hex digits", () => {
    for (const s of ["", "a", "foobar", "c-1", "0b1e2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d", "ünïcode ☃"])
      assert.equal(commandDigest(s), fnv1a64(s), JSON.stringify(s));
    assert.equal(commandDigest(""), "cbf29ce484222325");
    assert.equal(commandDigest("a"), "af63dc4c8601ec8c");
  });
});

describe("tombstones", () => {
  it("given a destroyed VM past its window, it may be forgotten; not before, nor with an intent", () => {
    const { vm } = destroyedVm();
    const destroyedAt = Date.parse(vm.updatedAt ?? "");
    assert.equal(isForgettable(vm, new Date(destroyedAt + 999), 1_000), false);
    assert.equal(isForgettable(vm, new Date(destroyedAt + 1_000), 1_000), true);
    const running = { ...vm, state: "running" as const };
    assert.equal(isForgettable(running, new Date(destroyedAt + 10_000), 1_000), false);
    const busy = {
      ...vm,
      pending: { commandId: "x", type: "vm.prepare" as const, since: "", deadline: "" },
    };
    assert.equal(isForgettable(busy, new Date(destroyedAt + 10_000), 1_000), false);
    assert.equal(
      isForgettable(given([]).vm, new Date(destroyedAt + 10_000), 1_000),
      false,
      "no events: nothing to purge",
    );
  });

  it("keeps the digest of every command seen; a VM known only by it refuses them as duplicates", () => {
    const { vm, ids } = destroyedVm();
    const t = tombstoneOf(vm, NOW);
    assert.ok(VmTombstone.safeParse(t).success);
    assert.deepEqual([...t.seen].sort(), ids.map(commandDigest).sort());
    assert.equal(t.lastEventSeq, vm.version);
    const back = vmFromTombstone(t);
    assert.equal(back.state, "destroyed");
    assert.equal(back.version, 0, "its subject has no events any more");
    for (const id of ids) {
      assert.equal(hasSeen(back, id), true);
      const again =
        id === ids[0]
          ? cmd({ type: "vm.prepare", spec, commandId: id })
          : cmd({ type: "vm.destroy", commandId: id });
      assert.equal(
        decide(again, back, { now: NOW }).kind,
        "duplicate",
        "no second effect, no second outcome",
      );
    }
    assert.equal(hasSeen(back, "never-seen"), false);
  });

  it("a VM used again starts with vm.tombstoned, and its later lives keep every earlier command", () => {
    const { vm, ids } = destroyedVm();
    const t = tombstoneOf(vm, NOW);
    const e = tombstonedEvent(t, NOW);
    assert.ok(VmEventSchema.safeParse(e).success, "the event satisfies its schema");
    // A full replay of the new life: the tombstone, then a new prepare.
    let life2 = evolve(given([]).vm, e, 1);
    assert.equal(life2.state, "destroyed");
    assert.equal(life2.spec, null);
    const p = cmd({ type: "vm.prepare", spec });
    const d = decide(p, life2, { now: NOW });
    assert.equal(d.kind, "accept", "a tombstoned vmId may be prepared again (as a destroyed one)");
    if (d.kind === "accept") life2 = evolve(life2, d.event, 2);
    assert.equal(life2.eventCount, 2, "its subject holds the tombstone and the new intent");
    // Evolved live from the old life (not replayed), the count restarts at the tombstone too.
    assert.equal(evolve(vm, e, 99).eventCount, 1);
    for (const id of ids) assert.equal(hasSeen(life2, id), true, "earlier commands stay seen");
    // Compacted again: the second tombstone holds both lives.
    const t2 = tombstoneOf({ ...life2, state: "destroyed", pending: null }, NOW);
    for (const id of ids) assert.ok(t2.seen.includes(commandDigest(id)), "the first life's");
  });

  it("a VM that was only ever rejected (no state) may be forgotten too; no time recorded counts as long ago", () => {
    const { vm } = destroyedVm();
    const at = Date.parse(vm.updatedAt ?? "");
    const rejectedOnly = { ...vm, state: null };
    assert.equal(isForgettable(rejectedOnly, new Date(at + 1_000), 1_000), true);
    assert.equal(isForgettable(rejectedOnly, new Date(at + 999), 1_000), false);
    const undated = { ...vm, updatedAt: null };
    assert.equal(isForgettable(undated, new Date(at), 1_000), true);
  });

  it("the tombstone: destroyed at the VM's last change (now when it has none), digests sorted", () => {
    const { vm } = destroyedVm();
    const t = tombstoneOf(vm, NOW);
    assert.equal(t.destroyedAt, vm.updatedAt);
    assert.equal(t.compactedAt, NOW.toISOString());
    assert.equal(tombstoneOf({ ...vm, updatedAt: null }, NOW).destroyedAt, NOW.toISOString());
    const unsorted = { ...vm, seenDigests: new Set(["ffffffffffffffff", "0000000000000000"]) };
    const seen = tombstoneOf(unsorted, NOW).seen;
    assert.deepEqual(seen, [...seen].sort(), "stored in one order, whatever the VM's");
    assert.equal(seen[0], "0000000000000000");
  });
});
