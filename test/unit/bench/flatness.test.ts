import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { departure } from "../../../scripts/bench/flatness.js";

describe("bench flatness", () => {
  it("is the largest relative departure of a later point from the first", () => {
    const points = [{ v: 100 }, { v: 110 }, { v: 85 }];
    assert.equal(departure(points, "v"), 0.15);
    assert.ok(departure([{ v: 100 }, { v: 121 }], "v") > 0.2);
  });
  it("is NaN with fewer than two points, 0 for flat zeros, Infinity for growth from zero", () => {
    assert.ok(Number.isNaN(departure([{ v: 1 }], "v")));
    assert.equal(departure([{ v: 0 }, { v: 0 }], "v"), 0);
    assert.equal(departure([{ v: 0 }, { v: 0 }, { v: 3 }], "v"), Infinity);
  });
});
