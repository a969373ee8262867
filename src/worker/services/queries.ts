import type { Msg, NatsConnection, Subscription } from "@nats-io/transport-node";
import { QUERY_NAMES, isValidId, type Names, type QueryName } from "../../contracts/index.js";
import { toView } from "../../domain/index.js";
import type { HypervisorRouter } from "../../hypervisor/index.js";
import { toVmqError } from "../../lib/errors.js";
import type { Logger } from "../../observability/logger.js";
import type { VmReader } from "../state/vm-streams.js";

export interface QueryDeps {
  host: string;
  names: Names;
  vms: VmReader;
  router: Pick<HypervisorRouter, "state" | "guestAddress" | "consoleEndpoint">;
  log: Logger;
}

const encoder = new TextEncoder();
const QUERY_TIMEOUT_MS = 10_000;

/** Answers `<prefix>.api.<host>.<vmId>.get|state|guest-ip|console` with request-reply. */
export function serveQueries(nc: NatsConnection, ctx: QueryDeps): Subscription {
  return nc.subscribe(ctx.names.apiFilter(ctx.host), {
    callback: (err, msg) => {
      if (err) {
        ctx.log.warn({ err }, "query subscription error");
        return;
      }
      void answer(msg, ctx);
    },
  });
}

async function answer(msg: Msg, ctx: QueryDeps): Promise<void> {
  const [, , , vmId = "", query = ""] = msg.subject.split(".");
  const reply = (body: unknown) => {
    if (msg.reply) msg.respond(encoder.encode(JSON.stringify(body)));
  };
  const fail = (code: string, message: string, hint?: string) =>
    reply({ ok: false, error: { code, message, ...(hint ? { hint } : {}) } });
  if (!QUERY_NAMES.includes(query as QueryName))
    return fail(
      "query::unknown",
      `unknown query ${JSON.stringify(query)}`,
      `Known: ${QUERY_NAMES.join(", ")}`,
    );
  if (!isValidId(vmId) || !ctx.vms.has(vmId))
    return fail("vm::not-found", `VM ${vmId} is not on host ${ctx.host}`);
  const vm = ctx.vms.get(vmId);
  const view = toView(vm);
  if (!view) return fail("vm::not-found", `VM ${vmId} is not on host ${ctx.host}`);
  try {
    const signal = AbortSignal.timeout(QUERY_TIMEOUT_MS);
    switch (query as QueryName) {
      case "get":
        return reply({ ok: true, vm: view });
      case "state": {
        const now =
          vm.handle && vm.state !== "destroyed"
            ? await ctx.router.state(vm.handle, { signal }).catch(() => "unknown" as const)
            : vm.state;
        return reply({ ok: true, state: now, recorded: view.state });
      }
      case "guest-ip":
        if (!vm.handle) return fail("vm::no-handle", `VM ${vmId} has not been prepared`);
        return reply({ ok: true, ...(await ctx.router.guestAddress(vm.handle, { signal })) });
      case "console":
        if (!vm.handle) return fail("vm::no-handle", `VM ${vmId} has not been prepared`);
        return reply({ ok: true, console: ctx.router.consoleEndpoint(vm.handle) });
    }
  } catch (e) {
    const err = toVmqError(e);
    return fail(err.code, err.message, err.hint);
  }
}
