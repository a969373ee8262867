import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { OwnWrites } from "../../../src/client/own-writes.js";
import { cancelKey } from "../../../src/contracts/index.js";

describe("what the client remembers of its own writes", () => {
  it("keeps the newest sequence per VM, forward only, and the newest overall", () => {
    const w = new OwnWrites();
    w.saw("a", "h1", 10);
    w.saw("a", "h1", 7); // an older outcome seen late does not move it back
    w.saw("b", "h2", 12);
    assert.deepEqual(w.of("a"), { host: "h1", seq: 10 });
    assert.deepEqual(w.of("b"), { host: "h2", seq: 12 });
    assert.equal(w.lastSeq, 12);
    assert.equal(w.of("c"), undefined);
  });

  it("is bounded: the VM written longest ago is forgotten first", () => {
    const w = new OwnWrites(2);
    w.saw("a", "h", 1);
    w.saw("b", "h", 2);
    w.saw("a", "h", 3); // a is now the newest
    w.saw("c", "h", 4);
    assert.equal(w.of("b"), undefined);
    assert.deepEqual(w.of("a"), { host: "h", seq: 3 });
    assert.deepEqual(w.of("c"), { host: "h", seq: 4 });
  });
});

describe("the key of a cancel", () => {
  it("is the host, then the commandId in hex: any printable commandId makes a valid key", () => {
    assert.equal(cancelKey("h1", "ab"), "h1.6162");
    const odd = "a b.c*>/~";
    const key = cancelKey("h1", odd);
    assert.match(key, /^h1\.[0-9a-f]+$/);
    const hex = key.slice(3);
    assert.equal(Buffer.from(hex, "hex").toString("latin1"), odd, "reversible, so no collisions");
  });
});
