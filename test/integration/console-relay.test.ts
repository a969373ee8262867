/**
 * The console relay (src/worker/console-relay.ts) with the SDK's client on a real nats-server,
 * over a backend whose console prints the moment it is opened: the client is subscribed to the
 * session's output before it asks, so those first bytes arrive. A VM that is not running gets
 * console::not-running (from the SDK and from `vmq console`), and so does a console socket
 * that is gone; a session id is the client's to choose, once.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import { VmqClient } from "../../src/client/index.js";
import { names as namesFor, type VmState } from "../../src/contracts/index.js";
import { emptyVm, type Vm } from "../../src/domain/index.js";
import type { ConsoleHandlers } from "../../src/hypervisor/index.js";
import { openUnixConsole } from "../../src/hypervisor/backends/shared/console.js";
import { isVmqError } from "../../src/lib/errors.js";
import { silentLogger } from "../../src/observability/logger.js";
import { serveConsole } from "../../src/worker/console-relay.js";
import { runVmq } from "../helpers/cli.js";
import { HANDLE } from "../helpers/decider-spec.js";
import { NatsServer, testPrefix } from "../helpers/nats-server.js";

const HOST = "c1";
const BANNER = "VMQ-EARLY-BANNER\r\n";

describe("console relay over NATS", { timeout: 60_000 }, () => {
  let server: NatsServer;
  let nc: NatsConnection;
  let relay: Subscription;
  let client: VmqClient;
  let prefix: string;
  const typed: string[] = [];
  const states = new Map<string, VmState>([
    ["run-1", "running"],
    ["off-1", "stopped"],
    ["new-1", "prepared"],
  ]);
  const vm = (vmId: string): Vm => {
    const state = states.get(vmId);
    return state
      ? { ...emptyVm(vmId, HOST), state, handle: { ...HANDLE, id: vmId } }
      : emptyVm(vmId, HOST);
  };

  before(async () => {
    server = await NatsServer.start();
    nc = await server.connect();
    prefix = testPrefix();
    relay = serveConsole(nc, {
      host: HOST,
      names: namesFor(prefix),
      vms: { size: 0, lastSeq: 0, get: vm, has: (id) => states.has(id), all: () => [] },
      router: {
        // A guest that prints the moment its console is opened, before the open reply.
        openConsole: (_h, handlers: ConsoleHandlers) => {
          handlers.onData(new TextEncoder().encode(BANNER));
          return Promise.resolve({
            write: (b) => void typed.push(Buffer.from(b).toString()),
            close: () => undefined,
          });
        },
      },
      log: silentLogger(),
    });
    client = new VmqClient(await server.connect(), { prefix });
  });
  after(async () => {
    relay.unsubscribe();
    await client.nc.close();
    await nc.close();
    await server.stop();
  });

  it("the bytes the guest prints right after open are received", async () => {
    // Several sessions in a row: with a subscription made after the reply, each would race.
    for (let i = 0; i < 5; i++) {
      const session = await client.openConsole("run-1", { host: HOST });
      const it = session.output()[Symbol.asyncIterator]();
      const first = await Promise.race([
        it.next(),
        new Promise<never>((_, reject) =>
          setTimeout(() => reject(new Error("no early byte within 10 s")), 10_000),
        ),
      ]);
      assert.equal(Buffer.from(first.value as Uint8Array).toString(), BANNER, `session ${i}`);
      session.write(`hello ${i}\r`);
      await waitUntil(() => typed.includes(`hello ${i}\r`));
      session.close();
    }
  });

  it("a VM that is not running: console::not-running, from the SDK and from vmq console", async () => {
    for (const vmId of ["off-1", "new-1"]) {
      await assert.rejects(client.openConsole(vmId, { host: HOST }), (e: unknown) => {
        assert.ok(isVmqError(e, "console::not-running"), String(e));
        assert.match(e.message, new RegExp(`VM ${vmId} is not running`));
        assert.match(e.hint ?? "", /start it first/);
        return true;
      });
    }
    const r = await runVmq(["console", "off-1", "--host", HOST, "--nats", server.url], {
      env: { VMQ_PREFIX: prefix },
      timeout: 30_000,
    });
    assert.equal(r.exitCode, 1, r.stderr);
    assert.match(r.stderr, /VM off-1 is not running \(it is stopped\).*\[console::not-running\]/);
    assert.doesNotMatch(r.stderr, /ENOENT/);
    await assert.rejects(client.openConsole("gone-1", { host: HOST }), (e: unknown) =>
      isVmqError(e, "vm::not-found"),
    );
  });

  it("a session id is the client's to choose, once; a malformed open request is refused", async () => {
    const subject = `${namesFor(prefix).consoleSubject(HOST, "run-1")}.open`;
    const ask = async (body: string) =>
      (await client.nc.request(subject, new TextEncoder().encode(body), { timeout: 10_000 })).json<{
        ok: boolean;
        subject?: string;
        error?: { code: string };
      }>();
    const id = "abcdefABCDEF0123";
    const first = await ask(JSON.stringify({ session: id }));
    assert.equal(first.subject, `${namesFor(prefix).consoleSubject(HOST, "run-1")}.${id}`);
    const again = await ask(JSON.stringify({ session: id }));
    assert.equal(again.error?.code, "console::unavailable", "already open");
    for (const bad of ["{", JSON.stringify({ session: "a.b>" }), JSON.stringify({ session: 7 })])
      assert.equal((await ask(bad)).error?.code, "console::unavailable", bad);
    const chosen = await ask("");
    assert.ok(chosen.ok && chosen.subject, "an empty request (an older client): the worker picks");
    for (const s of [first.subject, chosen.subject]) client.nc.publish(`${s}.close`);
  });

  it("a console socket that is gone says not running, not ENOENT", async () => {
    const dir = await mkdtemp(join(tmpdir(), "vmq-con-"));
    try {
      const handlers = { onData: () => undefined, onClose: () => undefined };
      await assert.rejects(
        openUnixConsole(join(dir, "console.sock"), "vm-9", handlers),
        (e: unknown) =>
          isVmqError(e, "console::not-running") && /vm-9 is not running/.test(e.message),
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

async function waitUntil(f: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!f()) {
    if (Date.now() > end) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 20));
  }
}
