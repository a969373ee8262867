import type { VmqClient } from "../client/index.js";
import { isValidId, StopForce, VmId, type VmSpecInput } from "../contracts/index.js";
import { VmqError } from "../lib/errors.js";
import { redact } from "./feed.js";

/**
 * The UI's JSON API: reads and the lifecycle/DLQ actions, each through the same SDK call as
 * the CLI (prepare, start, stop, ..., DeadLetters). Returns the body to send; throws VmqError.
 */
export interface ApiRequest {
  method: string;
  /** The path below /api/, split on "/". */
  parts: string[];
  body: unknown;
}

const ACTIONS = ["start", "stop", "suspend", "resume", "destroy"] as const;
type Action = (typeof ACTIONS)[number];

export async function handleApi(client: VmqClient, r: ApiRequest): Promise<unknown> {
  const [area, id, action, extra] = r.parts;
  if (area === "vms" && id !== undefined && extra === undefined) {
    const vmId = vmIdOf(id);
    if (r.method === "GET" && action === undefined) return vmDetail(client, vmId);
    if (r.method === "POST" && action === "prepare") return prepare(client, vmId, obj(r.body));
    if (r.method === "POST" && (ACTIONS as readonly string[]).includes(action ?? ""))
      return lifecycle(client, vmId, action as Action, obj(r.body));
  }
  if (area === "dlq" && extra === undefined) {
    const dlq = await client.deadLetters();
    if (r.method === "GET" && id === undefined) return dlq.list();
    const seq = seqOf(id);
    if (r.method === "GET" && action === undefined) return dlq.show(seq);
    if (r.method === "POST" && action === "retry") {
      const b = obj(r.body);
      return dlq.retry(seq, { newCommandId: b.newCommandId === true, force: b.force === true });
    }
    if (r.method === "POST" && action === "drop") {
      await dlq.drop(seq);
      return { dropped: seq };
    }
  }
  throw new VmqError("ui::not-found", `no ${r.method} /api/${r.parts.join("/")}`);
}

/** The view, the spec it was prepared from (without user-data) and every event so far. */
async function vmDetail(client: VmqClient, vmId: string): Promise<unknown> {
  const view = await client.get(vmId);
  if (!view)
    throw new VmqError(
      "client::vm-unknown",
      `VM ${vmId} is not in the ${client.names.vmsBucket} view`,
    );
  const history = await client.history(view.host, vmId);
  let spec: unknown = null;
  for (const { event } of history)
    if (event.type === "vm.prepared" && event.spec) spec = event.spec;
    else if (event.type === "vm.command-accepted" && event.command.type === "vm.prepare" && !spec)
      spec = event.command.spec;
  return {
    view,
    spec: redact(spec),
    history: history.map(({ event, seq }) => ({ seq, event: redact(event) })),
  };
}

async function prepare(
  client: VmqClient,
  vmId: string,
  b: Record<string, unknown>,
): Promise<unknown> {
  const host = optionalId(b.host, "host");
  const spec = {
    name: str(b.name) || vmId,
    imagePath: str(b.image),
    vcpus: num(b.vcpus, 1),
    memoryMb: num(b.memoryMb, 512),
    ...(str(b.backend) ? { backend: str(b.backend) } : {}),
  } as VmSpecInput;
  return client.prepare(vmId, spec, host ? { host } : {});
}

async function lifecycle(
  client: VmqClient,
  vmId: string,
  action: Action,
  b: Record<string, unknown>,
): Promise<unknown> {
  const host = optionalId(b.host, "host");
  const common = host ? { host } : {};
  const stopTimeoutMs = b.timeoutMs === undefined ? undefined : num(b.timeoutMs, 0);
  switch (action) {
    case "start":
      return client.start(vmId, common);
    case "suspend":
      return client.suspend(vmId, common);
    case "resume":
      return client.resume(vmId, common);
    case "stop": {
      const force = str(b.force);
      if (force && !StopForce.options.includes(force as StopForce))
        throw new VmqError("ui::bad-request", `force must be ${StopForce.options.join(", ")}`);
      return client.stop(vmId, {
        ...common,
        ...(stopTimeoutMs === undefined ? {} : { stopTimeoutMs }),
        ...(force ? { force: force as StopForce } : {}),
      });
    }
    case "destroy":
      return client.destroy(vmId, {
        ...common,
        ...(stopTimeoutMs === undefined ? {} : { stopTimeoutMs }),
      });
  }
}

function vmIdOf(raw: string): string {
  const r = VmId.safeParse(raw);
  if (!r.success) throw new VmqError("ui::bad-request", `invalid vmId ${JSON.stringify(raw)}`);
  return r.data;
}

function seqOf(raw: string | undefined): number {
  const n = Number(raw);
  if (!raw || !/^\d+$/.test(raw) || !Number.isSafeInteger(n))
    throw new VmqError("ui::bad-request", `invalid DLQ sequence ${JSON.stringify(raw)}`);
  return n;
}

function optionalId(v: unknown, what: string): string | undefined {
  if (v === undefined || v === null || v === "") return undefined;
  if (typeof v !== "string" || !isValidId(v))
    throw new VmqError("ui::bad-request", `invalid ${what} ${JSON.stringify(v)}`);
  return v;
}

const obj = (v: unknown): Record<string, unknown> =>
  v && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
const str = (v: unknown): string => (typeof v === "string" ? v.trim() : "");
function num(v: unknown, dflt: number): number {
  if (v === undefined || v === null || v === "") return dflt;
  const n = typeof v === "number" ? v : Number(v);
  if (!Number.isSafeInteger(n) || n < 0)
    throw new VmqError("ui::bad-request", `not a non-negative integer: ${JSON.stringify(v)}`);
  return n;
}
