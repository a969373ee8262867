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
  /** Open sessions: a session id a client asks for must not be one of them. */
  const open = new Set<string>();
  return nc.subscribe(`${ctx.names.prefix}.console.${ctx.host}.*.open`, {
    callback: (err, msg) => {
      if (err) return;
      const vmId = msg.subject.split(".")[3] ?? "";
      const reply = (body: unknown) => msg.respond(encoder.encode(JSON.stringify(body)));
      void Promise.resolve()
        .then(() => openSession(nc, ctx, vmId, askedSession(msg.data), open))
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

/** A session id: one subject token, long enough not to be guessed. */
const SESSION_ID = /^[A-Za-z0-9_-]{12,64}$/;

/**
 * The session id the client chose (`{"session": "<id>"}`), so that it could subscribe to the
 * session's output before asking: the first bytes are not lost. An empty request (older
 * clients) lets the worker choose.
 */
function askedSession(data: Uint8Array): string | undefined {
  if (data.length === 0) return undefined;
  try {
    const v = (JSON.parse(new TextDecoder().decode(data)) as { session?: unknown }).session;
    if (v === undefined) return undefined;
    if (typeof v === "string" && SESSION_ID.test(v)) return v;
  } catch {
    // fall through: refused below
  }
  throw new VmqError(
    "console::unavailable",
    'the console open request is not {"session": "<12 to 64 of A-Z a-z 0-9 _ ->"}',
  );
}

/** States in which a VM has a console to open; `unknown` may still be running, so it may try. */
const HAS_CONSOLE = new Set(["running", "suspended", "unknown"]);

async function openSession(
  nc: NatsConnection,
  ctx: ConsoleDeps,
  vmId: string,
  asked: string | undefined,
  sessions: Set<string>,
): Promise<{ session: string; subject: string }> {
  const vm = isValidId(vmId) ? ctx.vms.get(vmId) : undefined;
  if (!vm?.handle || vm.state === null || vm.state === "destroyed") {
    throw new VmqError("vm::not-found", `VM ${vmId} is not on host ${ctx.host}`);
  }
  if (!HAS_CONSOLE.has(vm.state)) {
    throw new VmqError("console::not-running", `VM ${vmId} is not running (it is ${vm.state})`);
  }
  if (asked !== undefined && sessions.has(asked)) {
    throw new VmqError("console::unavailable", `console session ${asked} is already open`);
  }
  const session = asked ?? randomUUID().replaceAll("-", "").slice(0, 16);
  const base = `${ctx.names.consoleSubject(ctx.host, vmId)}.${session}`;
  const subs: Subscription[] = [];
  let idle: NodeJS.Timeout | undefined;
  let closed = false;
  let pipe: ConsoleConnection | undefined = undefined; // set once the console is open
  const finish = (why: string) => {
    if (closed) return;
    closed = true;
    sessions.delete(session);
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
  sessions.add(session);
  subs.push(
    nc.subscribe(`${base}.in`, { callback: (_e, m) => (touch(), conn.write(m.data)) }),
    nc.subscribe(`${base}.ping`, { callback: () => touch() }),
    nc.subscribe(`${base}.close`, { callback: () => finish("client closed") }),
  );
  touch();
  ctx.log.info({ vmId, session }, "console session opened");
  return { session, subject: base };
}
