import assert from "node:assert/strict";
import http from "node:http";
import { after, before, describe, it } from "node:test";
import { setTimeout as delay } from "node:timers/promises";
import type WebSocket from "ws";
import { PropolisClient } from "../../../src/hypervisor/backends/propolis/propolis-client.js";
import { connectSerial } from "../../../src/hypervisor/backends/propolis/propolis-serial.js";
import { buildEnsureRequest } from "../../../src/hypervisor/backends/propolis/propolis-spec.js";
import { isVmqError } from "../../../src/lib/errors.js";
import { FakePropolisServer } from "../../helpers/fake-propolis/fake-propolis-server.js";

const body = (vmId = "vm1") =>
  buildEnsureRequest({
    vmId,
    name: vmId,
    vcpus: 2,
    memoryMb: 512,
    diskPath: "/dev/zvol/rdsk/rpool/vms/vm1",
  });

async function until(cond: () => boolean, what: string, ms = 5_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await delay(10);
  }
}

async function rejectsWith(p: Promise<unknown>, code: string) {
  let err: unknown;
  await assert.rejects(p, (e: unknown) => {
    assert.ok(isVmqError(e), String(e));
    assert.equal(e.code, code, e.message);
    err = e;
    return true;
  });
  return err as { details?: Record<string, unknown>; retryable: boolean; message: string };
}

describe("PropolisClient against the fake propolis-server", () => {
  const fakes: FakePropolisServer[] = [];
  const fresh = async (o = {}) => {
    const f = await FakePropolisServer.start({ stepMs: 5, ...o });
    fakes.push(f);
    return { f, c: new PropolisClient(f.addr) };
  };
  after(async () => {
    await Promise.all(fakes.map((f) => f.close()));
  });

  it("sends api-version on every call and walks ensure → Run → Running", async () => {
    const { f, c } = await fresh();
    await c.ensure(body());
    assert.equal((await c.get()).state, "Creating");
    await c.requestState("Run");
    const m = await c.monitor(3);
    assert.equal(m.state, "Running");
    assert.equal(m.gen, 3);
    assert.ok(f.requests.length >= 4);
    for (const r of f.requests)
      assert.equal(r.headers["api-version"], "5.0.0", `${r.method} ${r.path}`);
  });

  it("the fake's header gate answers 400 without the header, and the client maps a too-new pin", async () => {
    const { f, c } = await fresh();
    const status = await new Promise<number>((resolve, reject) => {
      http
        .get(`http://${f.addr}/instance`, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        })
        .on("error", reject);
    });
    assert.equal(status, 400);
    const tooNew = new PropolisClient(f.addr, { apiVersion: "6.0.0" });
    const e = await rejectsWith(tooNew.get(), "propolis::api-version");
    assert.equal(typeof e.details?.requestId, "string");
    await c.ensure(body()); // 5.0.0 passes
  });

  it("maps 424, 409, 403 and 500 to coded errors that keep the request_id", async () => {
    const { f, c } = await fresh();
    const e424 = await rejectsWith(c.get(), "propolis::no-instance");
    assert.match(String(e424.details?.requestId), /^[0-9a-f-]{36}$/);
    await c.ensure(body());
    const e409 = await rejectsWith(c.ensure(body()), "propolis::invalid-state");
    assert.equal(e409.details?.errorCode, "AlreadyInitialized");
    const e403 = await rejectsWith(c.requestState("Reboot"), "propolis::invalid-state");
    assert.match(String(e403.details?.errorCode), /requires an active instance/);
    const { f: f2, c: c2 } = await fresh();
    f2.failEnsure();
    const e500 = await rejectsWith(c2.ensure(body()), "propolis::server-error");
    assert.equal(typeof e500.details?.requestId, "string");
    void f;
  });

  it("maps 503 to a retryable busy error and a dead server to retryable unreachable", async () => {
    const { f, c } = await fresh();
    await c.ensure(body());
    f.busyNext(1);
    assert.equal((await rejectsWith(c.requestState("Run"), "propolis::busy")).retryable, true);
    f.crash();
    assert.equal((await rejectsWith(c.get(), "propolis::unreachable")).retryable, true);
    const closed = new PropolisClient("127.0.0.1:1");
    await rejectsWith(closed.get(), "propolis::unreachable");
  });

  it("long-polls without a timeout and is cancelled by its signal", async () => {
    const { f, c } = await fresh();
    await c.ensure(body());
    const ac = new AbortController();
    const p = c.monitor(50, { signal: ac.signal }).then(
      () => undefined,
      (e: unknown) => e,
    );
    await until(() => f.monitorWaiters === 1, "the poll parked on the server");
    await delay(300);
    assert.equal(f.monitorWaiters, 1, "no client-side timeout ends the poll");
    ac.abort();
    const e = await p;
    assert.ok(isVmqError(e, "hypervisor::aborted"), String(e));
    await until(() => f.monitorWaiters === 0, "aborting closed the connection");
    const gen = f.gen;
    const waiting = c.monitor(gen + 1);
    await until(() => f.monitorWaiters === 1, "the second poll parked");
    await c.requestState("Run");
    const m = await waiting;
    assert.ok(m.gen >= gen + 1);
    const last = f.requests.filter((r) => r.path === "/instance/state-monitor").at(-1);
    assert.deepEqual(
      last?.body,
      { gen: gen + 1 },
      "the monitor request carries a JSON body on GET",
    );
  });

  it("answers 410 to a poll whose publisher is replaced by a re-ensure", async () => {
    const { f, c } = await fresh();
    await c.ensure(body());
    await c.requestState("Stop");
    await c.monitor(4); // Destroyed
    assert.equal(f.state, "Destroyed");
    const settled = c.monitor(10).then(
      () => undefined,
      (e: unknown) => e,
    );
    await delay(30);
    await c.ensure(body());
    const e = await settled;
    assert.ok(isVmqError(e, "propolis::gone"), String(e));
    assert.equal(f.gen, 1, "a fresh ensure restarts the generation");
    assert.equal(f.state, "Creating");
  });
});

describe("serial console against the fake", () => {
  let f: FakePropolisServer;
  let c: PropolisClient;
  before(async () => {
    f = await FakePropolisServer.start({ stepMs: 5 });
    c = new PropolisClient(f.addr);
    await c.ensure(body());
    await c.requestState("Run");
    await c.monitor(3);
  });
  after(async () => {
    await f.close();
  });

  it("reads history by offset and rejects both/neither offsets", async () => {
    f.writeSerial("hello ");
    f.writeSerial("world");
    const h = await c.serialHistory({ fromStart: 0 });
    assert.equal(h.data.toString(), "hello world");
    assert.equal(h.lastByteOffset, 11);
    const tail = await c.serialHistory({ mostRecent: 5 });
    assert.equal(tail.data.toString(), "world");
    const page = await c.serialHistory({ fromStart: 6, maxBytes: 3 });
    assert.equal(page.data.toString(), "wor");
  });

  it("streams history then live bytes over the websocket, sends input, and closes 1001 on stop", async () => {
    const got: Buffer[] = [];
    const notices: unknown[] = [];
    const ws: WebSocket = await connectSerial(f.addr, {
      fromStart: 0,
      onData: (d) => got.push(d),
      onMigrating: (m) => notices.push(m),
    });
    const closed = new Promise<number>((resolve) => ws.on("close", (code) => resolve(code)));
    await delay(50);
    f.writeSerial("LIVE");
    ws.send(Buffer.from("input"), { binary: true });
    await delay(50);
    assert.match(Buffer.concat(got).toString(), /hello world.*LIVE/s);
    assert.equal(Buffer.concat(f.serialInput).toString(), "input");
    f.announceMigration("10.0.0.9:12400", 42);
    await delay(30);
    assert.deepEqual(notices, [{ destination: "10.0.0.9:12400", fromStart: 42 }]);
    const upgrade = f.requests.find((r) => r.path === "/instance/serial");
    assert.equal(upgrade?.headers["api-version"], "5.0.0");
    await c.requestState("Stop");
    assert.equal(await closed, 1001);
  });

  it("the upgrade is refused without a supported api-version", async () => {
    await assert.rejects(connectSerial(f.addr, { apiVersion: "9.9.9" }), (e: unknown) =>
      isVmqError(e, "propolis::api-version"),
    );
  });
});
