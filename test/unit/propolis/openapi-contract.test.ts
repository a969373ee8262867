/**
 * Checks our wire shapes against propolis-server's published OpenAPI document (5.0.0): what
 * the client SENDS (captured by the fake) and what the fake ANSWERS. The document is read
 * from ../shared/propolis/ beside the repository and never copied into it.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import http from "node:http";
import { after, before, describe, it } from "node:test";
import { Ajv, type ValidateFunction } from "ajv";
import addFormatsModule from "ajv-formats";
import { PropolisClient } from "../../../src/hypervisor/backends/propolis/propolis-client.js";
import { buildEnsureRequest } from "../../../src/hypervisor/backends/propolis/propolis-spec.js";
import { FakePropolisServer } from "../../helpers/fake-propolis/fake-propolis-server.js";
import { sharedFile, skipWhenMissing } from "../../helpers/required.js";

const { path: DOC, missing } = sharedFile(
  "propolis/propolis-server-5.0.0-0c6dd9.json",
  "Propolis OpenAPI",
);
const addFormats = addFormatsModule as unknown as (ajv: Ajv) => Ajv;

type Json = Record<string, unknown>;

/**
 * The rewrites SOURCES.md lists: OpenAPI nullable → anyOf with null; SpecKey oneOf → anyOf;
 * plus refs moved from components/schemas to $defs so Ajv can hold the set as one schema.
 */
function rewrite(node: unknown, key?: string): unknown {
  if (Array.isArray(node)) return node.map((n) => rewrite(n));
  if (typeof node !== "object" || node === null) return node;
  const o: Json = {};
  for (const [k, v] of Object.entries(node as Json)) o[k] = rewrite(v, k);
  if (typeof o.$ref === "string") o.$ref = o.$ref.replace("#/components/schemas/", "#/$defs/");
  if (key === "SpecKey" && Array.isArray(o.oneOf)) {
    o.anyOf = o.oneOf;
    delete o.oneOf;
  }
  if (o.nullable === true) {
    delete o.nullable;
    const { description, title, ...rest } = o;
    const inner =
      Array.isArray(rest.allOf) && rest.allOf.length === 1 && Object.keys(rest).length === 1
        ? (rest.allOf as unknown[])[0]
        : rest;
    return {
      ...(description === undefined ? {} : { description }),
      ...(title === undefined ? {} : { title }),
      anyOf: [inner, { type: "null" }],
    };
  }
  return o;
}

function rawRequest(
  addr: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; body: unknown }> {
  const [host, port] = addr.split(":");
  const payload = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host,
        port: Number(port),
        method,
        path,
        headers: {
          "api-version": "5.0.0",
          ...(payload
            ? {
                "content-type": "application/json",
                "content-length": String(Buffer.byteLength(payload)),
              }
            : {}),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const t = Buffer.concat(chunks).toString();
          resolve({
            status: res.statusCode ?? 0,
            body: t ? (JSON.parse(t) as unknown) : undefined,
          });
        });
      },
    );
    req.on("error", reject);
    req.end(payload);
  });
}

describe("OpenAPI contract (propolis-server 5.0.0)", () => {
  let ajv: Ajv;
  let fake: FakePropolisServer;
  const schema = (name: string): ValidateFunction => {
    const v = ajv.getSchema(`propolis#/$defs/${name}`);
    assert.ok(v, `schema ${name} in the document`);
    return v;
  };
  const check = (name: string, value: unknown) => {
    const v = schema(name);
    assert.ok(v(value), `${name}: ${ajv.errorsText(v.errors)}\n${JSON.stringify(value)}`);
  };

  before(async () => {
    if (missing) return;
    const doc = rewrite(JSON.parse(readFileSync(DOC, "utf8"))) as Json;
    ajv = new Ajv({ strict: true, strictTypes: false, allErrors: true });
    addFormats(ajv);
    const n = (max: number, min = 0) => ({
      type: "number" as const,
      validate: (x: number) => Number.isInteger(x) && x >= min && x <= max,
    });
    ajv.addFormat("uint8", n(255));
    ajv.addFormat("uint16", n(65535));
    ajv.addFormat("uint32", n(0xffffffff));
    ajv.addFormat("uint64", n(Number.MAX_SAFE_INTEGER));
    ajv.addFormat("uint", n(Number.MAX_SAFE_INTEGER));
    ajv.addFormat("int32", n(2 ** 31 - 1, -(2 ** 31)));
    ajv.addFormat("int64", n(Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER));
    ajv.addFormat("double", { type: "number", validate: () => true });
    ajv.addFormat("float", { type: "number", validate: () => true });
    ajv.addFormat("ip", { type: "string", validate: (s: string) => /^[0-9a-fA-F:.]+$/.test(s) });
    ajv.addKeyword("example");
    ajv.addSchema({ $id: "propolis", $defs: (doc.components as Json).schemas }, "propolis");
    fake = await FakePropolisServer.start({ stepMs: 5 });
  });
  after(async () => {
    await fake?.close();
  });

  it("validates what the client sends and what the fake answers", async (t) => {
    if (skipWhenMissing(t, missing)) return;
    const c = new PropolisClient(fake.addr);
    const full = buildEnsureRequest({
      vmId: "contract",
      name: "contract vm",
      vcpus: 4,
      memoryMb: 2048,
      diskPath: "/dev/zvol/rdsk/rpool/vms/contract",
      seedIsoPath: "/vmq/seed.iso",
      vnic: "vnic0",
    });
    // errors before any instance
    const none = await rawRequest(fake.addr, "GET", "/instance");
    assert.equal(none.status, 424);
    check("Error", none.body);

    await c.ensure(full);
    await c.requestState("Run");
    await c.monitor(3);
    fake.writeSerial("boot ok\n");
    await c.serialHistory({ fromStart: 0 });

    const sent = (path: string, method = "PUT") =>
      fake.requests.filter((r) => r.path === path && r.method === method).map((r) => r.body);
    const [ensureBody] = sent("/instance");
    check("InstanceEnsureRequest", ensureBody);
    assert.equal(
      Object.keys(
        (ensureBody as { init: { value: { spec: { components: Json } } } }).init.value.spec
          .components,
      ).length,
      8,
    );
    for (const b of sent("/instance/state")) check("InstanceStateRequested", b);
    const polls = sent("/instance/state-monitor", "GET");
    assert.ok(polls.length > 0);
    for (const b of polls) check("InstanceStateMonitorRequest", b);

    const got = await rawRequest(fake.addr, "GET", "/instance");
    check("InstanceGetResponse", got.body);
    const mon = await rawRequest(fake.addr, "GET", "/instance/state-monitor", { gen: 1 });
    check("InstanceStateMonitorResponse", mon.body);
    const hist = await rawRequest(fake.addr, "GET", "/instance/serial/history?most_recent=4");
    check("InstanceSerialConsoleHistoryResponse", hist.body);
    const dup = await rawRequest(fake.addr, "PUT", "/instance", full);
    assert.equal(dup.status, 409);
    check("Error", dup.body);
    const denied = await rawRequest(fake.addr, "PUT", "/instance/state", "Bogus");
    assert.equal(denied.status, 400);
    check("Error", denied.body);

    const other = await FakePropolisServer.start();
    try {
      const created = await rawRequest(other.addr, "PUT", "/instance", full);
      assert.equal(created.status, 201);
      check("InstanceEnsureResponse", created.body);
    } finally {
      await other.close();
    }
  });

  it("rejects bodies the real server would reject (the check has teeth)", (t) => {
    if (skipWhenMissing(t, missing)) return;
    // vm-manager's legacy body: no init, no metadata.
    const legacy = {
      properties: { id: "propolis-x", name: "a", description: "b" },
      nics: [],
      disks: [],
    };
    assert.equal(schema("InstanceEnsureRequest")(legacy), false);
    assert.equal(schema("InstanceStateRequested")("Pause"), false);
  });
});
