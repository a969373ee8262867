import { randomUUID } from "node:crypto";
import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import { isValidId, type Names } from "../contracts/index.js";
import type { ConsoleConnection, HypervisorRouter } from "../hypervisor/index.js";
import type { Logger } from "../observability/logger.js";
import { toVmqError, VmqError } from "../lib/errors.js";
import type { VmReader } from "./state/vm-streams.js";

export interface ConsoleDeps {
  host: string;
  names: Names;
  vms: VmReader;
  router: Pick<HypervisorRouter, "openConsole">;
  log: Logger;
}

const encoder = new TextEncoder();
/** A session with no ping from its client for this long is closed. */
const IDLE_MS = 30_000;

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
  const session = randomUUID().slice(0, 12);
  const base = `${ctx.names.consoleSubject(ctx.host, vmId)}.${session}`;
  const subs: Subscription[] = [];
  let idle: NodeJS.Timeout | undefined;
  let closed = false;
  let pipe: ConsoleConnection | undefined = undefined; // set once the console is open
  const finish = (why: string) => {
    if (closed) return;
    closed = true;
    clearTimeout(idle);
    subs.forEach((s) => s.unsubscribe());
    pipe?.close();
    nc.publish(`${base}.closed`, encoder.encode(why));
    ctx.log.info({ vmId, session, why }, "console session closed");
  };
  const touch = () => {
    clearTimeout(idle);
    idle = setTimeout(() => finish("idle"), IDLE_MS);
    idle.unref();
  };
  // The backend opens its own kind of console (unix socket, websocket) or refuses.
  const conn = await ctx.router.openConsole(vm.handle, {
    onData: (d) => nc.publish(`${base}.out`, d),
    onClose: (why) => finish(`console ${why}`),
  });
  pipe = conn;
  if (closed) throw new VmqError("console::unavailable", `VM ${vmId}'s console ended as it opened`);
  subs.push(
    nc.subscribe(`${base}.in`, { callback: (_e, m) => (touch(), conn.write(m.data)) }),
    nc.subscribe(`${base}.ping`, { callback: () => touch() }),
    nc.subscribe(`${base}.close`, { callback: () => finish("client closed") }),
  );
  touch();
  ctx.log.info({ vmId, session }, "console session opened");
  return { session, subject: base };
}
