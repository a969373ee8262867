import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  controlVnicName,
  freeAddress,
  guestIpFromNeighbours,
  inRange,
  normalizeMac,
  parseRange,
} from "../../../src/hypervisor/backends/propolis/zone-network.js";
import { isVmqError } from "../../../src/lib/errors.js";

describe("Propolis zone network (pure)", () => {
  it("allocates the lowest free address of a range, and says when none is left", () => {
    const r = parseRange("10.0.0.254-10.0.1.1");
    assert.equal(freeAddress(r, new Set()), "10.0.0.254");
    assert.equal(freeAddress(r, new Set(["10.0.0.254", "10.0.0.255"])), "10.0.1.0");
    const all = new Set(["10.0.0.254", "10.0.0.255", "10.0.1.0", "10.0.1.1"]);
    assert.equal(freeAddress(r, all), undefined);
    assert.equal(freeAddress(parseRange("192.168.7.7"), new Set()), "192.168.7.7");
    assert.ok(inRange(r, "10.0.1.1") && !inRange(r, "10.0.1.2") && !inRange(r, "x"));
  });

  it("refuses ranges that are not IPv4 first-last", () => {
    for (const bad of [
      "10.0.0.9-10.0.0.1",
      "10.0.0.1-",
      "::1-::2",
      "10.0.0.1-10.0.0.2-10.0.0.3",
      "a",
    ]) {
      assert.throws(
        () => parseRange(bad),
        (e: unknown) => isVmqError(e, "hypervisor::invalid-path"),
        bad,
      );
    }
    assert.throws(() => parseRange("10.0.0.0-10.2.0.0"), /larger than/);
  });

  it("names control VNICs as illumos links: letter first, digit last, at most 31 characters", () => {
    const a = controlVnicName("vmq-a");
    assert.match(a, /^[a-z][a-z0-9]{0,29}[0-9]$/);
    assert.equal(a, controlVnicName("vmq-a"), "stable");
    assert.notEqual(a, controlVnicName("vmq-b"));
    assert.ok(controlVnicName("x".repeat(63)).length <= 31);
  });

  it("normalizes MACs as dladm and arp print them", () => {
    assert.equal(normalizeMac("2:8:20:AB:c:d"), "02:08:20:ab:0c:0d");
    assert.equal(normalizeMac("02-08-20-ab-0c-0d"), "02:08:20:ab:0c:0d");
    assert.equal(normalizeMac("2:8:20:ab:c"), undefined);
    assert.equal(normalizeMac("10.0.0.1"), undefined);
  });

  it("reads the guest's address by MAC, skipping the zone's own entries and other MACs", () => {
    const arp = [
      "Net to Media Table: IPv4",
      "Device   IP Address               Mask      Flags      Phys Addr",
      "------ -------------------- --------------- -------- ---------------",
      "ctl0   10.1.0.10            255.255.255.255 SPLA     2:8:20:0:0:1",
      "ctl0   10.1.0.99            255.255.255.255          02:08:20:00:00:02",
      "ctl0   10.1.0.50            255.255.255.255          2:8:20:0:0:1",
    ].join("\n");
    const ndp =
      "ctl0 2:8:20:0:0:1 dynamic REACHABLE fe80::1\nctl0 2:8:20:0:0:1 dynamic REACHABLE 2001:db8::50\n";
    const tables = `${arp}\n${ndp}`;
    assert.equal(guestIpFromNeighbours(tables, "02:08:20:00:00:01"), "10.1.0.50", "IPv4 first");
    assert.equal(guestIpFromNeighbours(ndp, "2:8:20:0:0:1"), "2001:db8::50", "link-local skipped");
    assert.equal(guestIpFromNeighbours(tables, "2:8:20:0:0:2"), "10.1.0.99");
    assert.equal(guestIpFromNeighbours(tables, "2:8:20:0:0:3"), undefined, "unknown MAC: none");
    assert.equal(
      guestIpFromNeighbours("ctl0 10.1.0.10 255.255.255.255 2:8:20:0:0:4", "2:8:20:0:0:4", [
        "10.1.0.10",
      ]),
      undefined,
      "the zone's control address is never the guest's",
    );
    assert.equal(guestIpFromNeighbours(tables, "not a mac"), undefined);
  });
});
