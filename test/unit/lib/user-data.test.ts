/**
 * Sealed user-data: what the SDK seals only the recipient host opens; another key, a tampered
 * blob or a forged sender is refused with its code; plaintext becomes a digest and size wherever
 * a command is recorded or dead-lettered; the contract takes exactly one form, and a command
 * holding only a digest is refused.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { createCurve } from "@nats-io/nkeys";
import { sealSpecFor } from "../../../src/client/sealing.js";
import { CloudInit, parseCommand, type HostRecord } from "../../../src/contracts/index.js";
import { isVmqError } from "../../../src/lib/errors.js";
import {
  openUserData,
  recordable,
  sealUserData,
  userDataDigest,
  withheldRaw,
  withheldSpec,
} from "../../../src/lib/user-data.js";

const TEXT = "#cloud-config\npassword: hunter2-äö\n";
const spec = { name: "w", imagePath: "/i.qcow2", vcpus: 1, memoryMb: 256 };
const prepare = (cloudInit: unknown) => ({
  type: "vm.prepare",
  version: 1,
  commandId: "c1",
  vmId: "web-1",
  issuedAt: "2026-11-25T10:00:00Z",
  spec: { ...spec, cloudInit },
});
const KEY = createCurve().getPublicKey();
const code = (c: string) => (e: unknown) => isVmqError(e) && e.code === c;

describe("sealed user-data", () => {
  const host = createCurve();
  const other = createCurve();

  it("opens with the recipient's key only, and the blob holds no plaintext", () => {
    const sealed = sealUserData(TEXT, host.getPublicKey());
    assert.ok(CloudInit.safeParse({ sealedUserData: sealed }).success, "the contract takes it");
    assert.equal(sealed.recipient, host.getPublicKey());
    assert.ok(!Buffer.from(sealed.data, "base64").includes("hunter2"));
    assert.equal(openUserData(sealed, host), TEXT);
    assert.notEqual(sealed.data, sealUserData(TEXT, host.getPublicKey()).data, "fresh nonce");
    assert.throws(() => openUserData(sealed, other), code("userdata::wrong-host"));
  });

  it("a blob that does not open is userdata::unsealable, whatever is wrong with it", () => {
    const sealed = sealUserData(TEXT, host.getPublicKey());
    const bytes = Buffer.from(sealed.data, "base64");
    bytes[bytes.length - 1] = (bytes[bytes.length - 1] ?? 0) ^ 1;
    const tampered = { ...sealed, data: bytes.toString("base64") };
    assert.throws(() => openUserData(tampered, host), code("userdata::unsealable"));
    const forged = { ...sealed, sender: other.getPublicKey() };
    assert.throws(() => openUserData(forged, host), code("userdata::unsealable"));
    const lying = { ...sealUserData(TEXT, other.getPublicKey()), recipient: host.getPublicKey() };
    assert.throws(() => openUserData(lying, host), code("userdata::unsealable"));
  });

  it("plaintext is recorded as its digest and size; sealed stays sealed", () => {
    const parsed = parseCommand(JSON.stringify(prepare({ userData: TEXT, hostname: "h" })));
    assert.ok(parsed.ok && parsed.command.type === "vm.prepare");
    const r = recordable(parsed.command);
    assert.ok(r.type === "vm.prepare");
    assert.deepEqual(r.spec.cloudInit, {
      hostname: "h",
      userData: "",
      userDataDigest: userDataDigest(TEXT),
      userDataBytes: Buffer.byteLength(TEXT),
    });
    assert.match(userDataDigest(TEXT), /^sha256:[0-9a-f]{64}$/);
    assert.equal(parsed.command.spec.cloudInit?.userData, TEXT, "the original is untouched");
    const sealedUserData = sealUserData(TEXT, KEY);
    const sealed = { ...spec, cloudInit: { sealedUserData } };
    assert.deepEqual(withheldSpec(sealed as never).cloudInit, { sealedUserData, userData: "" });
    assert.ok(CloudInit.safeParse({ sealedUserData, userData: "" }).success, "for older readers");
    assert.ok(!CloudInit.safeParse({ sealedUserData, userData: "x" }).success);
  });

  it("a DLQ copy of a JSON body loses plaintext user-data; any other body is kept", () => {
    const body = Buffer.from(JSON.stringify({ ...prepare({ userData: TEXT }), vcpus: 999 }));
    const w = withheldRaw(body);
    assert.equal(w.withheld, true);
    const text = Buffer.from(w.data).toString();
    assert.ok(!text.includes("hunter2"), text);
    assert.match(text, /"userData":"","userDataDigest":"sha256:[0-9a-f]{64}","userDataBytes":\d+/);
    const again = withheldRaw(w.data);
    assert.equal(again.withheld, false, "a withheld copy has nothing more to withhold");
    for (const raw of ["not json", "[1]", "null", JSON.stringify(prepare({ userData: 7 }))]) {
      const kept = withheldRaw(Buffer.from(raw));
      assert.equal(kept.withheld, false, raw);
      assert.equal(Buffer.from(kept.data).toString(), raw);
    }
  });

  it("the contract takes exactly one form; a command holding only a digest is refused", () => {
    const sealed = sealUserData(TEXT, host.getPublicKey());
    const both = parseCommand(JSON.stringify(prepare({ userData: TEXT, sealedUserData: sealed })));
    assert.equal(!both.ok && both.code, "command::invalid");
    const none = parseCommand(JSON.stringify(prepare({ hostname: "h" })));
    assert.equal(!none.ok && none.code, "command::invalid");
    const digest = { userDataDigest: userDataDigest(TEXT), userDataBytes: 10 };
    const withheld = parseCommand(JSON.stringify(prepare(digest)));
    assert.ok(!withheld.ok);
    assert.equal(withheld.code, "command::invalid");
    assert.match(withheld.message, /withheld/);
    assert.ok(CloudInit.safeParse(digest).success, "as events hold it");
  });
});

describe("sealSpecFor (SDK and CLI)", () => {
  const host = createCurve();
  const record = (key?: string) =>
    ({ host: "h1", ...(key ? { userDataKey: key } : {}) }) as unknown as HostRecord;
  const withUd = { ...spec, cloudInit: { userData: TEXT, hostname: "x" } };

  it("seals to the target host's key", async () => {
    const out = await sealSpecFor(
      () => Promise.resolve([record(host.getPublicKey())]),
      "h1",
      withUd,
    );
    assert.equal(out.cloudInit?.userData, undefined);
    assert.equal(out.cloudInit?.hostname, "x");
    const sealed = out.cloudInit?.sealedUserData;
    assert.ok(sealed);
    assert.equal(openUserData(sealed, host), TEXT);
  });

  it("a host without a key is userdata::no-host-key, unless plaintext is asked for", async () => {
    const hosts = () => Promise.resolve([record()]);
    await assert.rejects(sealSpecFor(hosts, "h1", withUd), code("userdata::no-host-key"));
    await assert.rejects(sealSpecFor(hosts, "gone", withUd), code("userdata::no-host-key"));
    assert.equal(await sealSpecFor(hosts, "h1", withUd, { plaintextUserData: true }), withUd);
    assert.equal(await sealSpecFor(hosts, "h1", spec), spec, "nothing to seal");
  });
});
