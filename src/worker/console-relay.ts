import { randomUUID } from "node:crypto";
import { createConnection } from "node:net";
import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import { isValidId, type Names } from "../contracts/index.js";
import type { HypervisorRouter } from "../hypervisor/index.js";
import type { Logger } from "../observability/logger.js";
import { connectSerial } from "../hypervisor/backends/propolis/propolis-serial.js";
import { toVmqError, VmqError } from "../lib/errors.js";
import type { VmReader } from "./state/vm-streams.js";

export interface ConsoleDeps {
  host: string;
  names: Names;
  vms: VmReader;
  router: Pick<HypervisorRouter, "consoleEndpoint">;
  log: Logger;
}

const encoder = new TextEncoder();
/** A session with no ping from its client for this long is closed. */
const IDLE_MS = 30_000;

interface Pipe {
  write(data: Uint8Array): void;
  close(): void;
}

/**
 * Relays a VM's serial console over NATS, so an operator need not log into the host:
 * `<prefix>.console.<host>.<vmId>.open` (request) starts a session; bytes from the VM go to
 * `<session>.out`, the client writes to `<session>.in`, pings `<session>.ping`, ends with
 * `<session>.close`; `<session>.closed` says the worker ended it.
 */
export function serveConsole(nc: NatsConnection, ctx: ConsoleDeps): Subscription {
  return nc.subscribe(`${ctx.names.prefix}.console.${ctx.host}.*.open`, {
    callback: (err, msg) => {
      if (err) return;
      const vmId = msg.subject.split(".")[3] ?? "";
      const reply = (body: unknown) => msg.respond(encoder.encode(JSON.stringify(body)));
      void open(nc, ctx, vmId)
        .then((session) => reply({ ok: true, ...session }))
        .catch((e: unknown) => {
          const err = toVmqError(e, "console::unavailable");
          reply({
            ok: false,
            error: {
              code: err.code,
              message: err.message,
              ...(err.hint ? { hint: err.hint } : {}),
            },
          });
        });
    },
  });
}

async function open(
  nc: NatsConnection,
  ctx: ConsoleDeps,
  vmId: string,
): Promise<{ session: string; subject: string }> {
  const vm = isValidId(vmId) ? ctx.vms.get(vmId) : undefined;
  if (!vm?.handle || vm.state === null || vm.state === "destroyed") {
    throw new VmqError("vm::not-found", `VM ${vmId} is not on host ${ctx.host}`);
  }
  const ep = ctx.router.consoleEndpoint(vm.handle);
  const session = randomUUID().slice(0, 12);
  const base = `${ctx.names.consoleSubject(ctx.host, vmId)}.${session}`;
  const subs: Subscription[] = [];
  let idle: NodeJS.Timeout | undefined;
  let closed = false;
  const finish = (why: string) => {
    if (closed) return;
    closed = true;
    clearTimeout(idle);
    subs.forEach((s) => s.unsubscribe());
    pipe.close();
    nc.publish(`${base}.closed`, encoder.encode(why));
    ctx.log.info({ vmId, session, why }, "console session closed");
  };
  const touch = () => {
    clearTimeout(idle);
    idle = setTimeout(() => finish("idle"), IDLE_MS);
    idle.unref();
  };
  const onData = (d: Uint8Array) => nc.publish(`${base}.out`, d);

  let pipe: Pipe;
  if (ep.type === "unix-socket") {
    const sock = createConnection(ep.path);
    await new Promise<void>((resolve, reject) => {
      sock.once("connect", resolve);
      sock.once("error", reject);
    });
    sock.on("data", onData);
    sock.on("close", () => finish("console closed"));
    sock.on("error", () => finish("console error"));
    pipe = { write: (d) => sock.write(d), close: () => sock.destroy() };
  } else if (ep.type === "websocket" && vm.handle.propolisAddr) {
    const ws = await connectSerial(vm.handle.propolisAddr);
    ws.on("message", (d: Buffer, isBinary: boolean) => {
      if (isBinary) onData(d);
    });
    ws.on("close", () => finish("console closed"));
    pipe = { write: (d) => ws.send(d), close: () => ws.close() };
  } else {
    throw new VmqError(
      "console::unavailable",
      `VM ${vmId}'s backend (${vm.handle.backend}) has no serial console`,
    );
  }
  subs.push(
    nc.subscribe(`${base}.in`, { callback: (_e, m) => (touch(), pipe.write(m.data)) }),
    nc.subscribe(`${base}.ping`, { callback: () => touch() }),
    nc.subscribe(`${base}.close`, { callback: () => finish("client closed") }),
  );
  touch();
  ctx.log.info({ vmId, session }, "console session opened");
  return { session, subject: base };
}
