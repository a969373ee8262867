import { randomUUID } from "node:crypto";
import {
  DeliverPolicy,
  jetstream,
  jetstreamManager,
  type JetStreamClient,
  type JetStreamManager,
} from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import { latestValues } from "./kv-scan.js";
import { Placer, type PlacementRequest } from "./placement.js";
import {
  Command,
  HostRecord,
  QUERY_REPLY_SCHEMAS,
  type VmEvent,
  VmView,
  names as namesFor,
  upcastEvent,
  type CommandInput,
  type ConsoleEndpoint,
  type GuestAddress,
  type StopForce,
  type VmSpecInput,
  type Names,
  type QueryName,
  type QueryReply,
} from "../contracts/index.js";
import { receivedCode, VmqError } from "../lib/errors.js";
import { untilAborted } from "../lib/time.js";

export interface VmqClientOptions {
  prefix?: string;
  /** Default time to wait for an outcome. */
  timeoutMs?: number;
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/** A command as a scheduler writes it: commandId, version and issuedAt are filled in. */
export type CommandBody = DistributiveOmit<CommandInput, "commandId" | "version" | "issuedAt"> & {
  commandId?: string;
  issuedAt?: string;
};

export interface SendResult {
  commandId: string;
  /** The command's stream sequence in VMQ_COMMANDS. */
  seq: number;
  /** The first event caused by the command that is not vm.command-accepted. */
  outcome: VmEvent;
  /** Its stream sequence: the VM's version after the command. */
  outcomeSeq: number;
  accepted: boolean;
}

export interface WatchOptions {
  /** Start after this stream sequence, at this time, or only new events (default: all history). */
  afterSeq?: number;
  since?: Date;
  newOnly?: boolean;
  signal?: AbortSignal;
  /** Stop once the events stored when the watch reaches them are delivered (no following). */
  toEnd?: boolean;
  /**
   * An event this client cannot read (a newer vmq wrote it): called, and the watch goes on.
   * Without it the watch throws `client::unreadable-event`: nothing is skipped silently.
   */
  onUnreadable?: (info: { seq: number; subject: string; message: string }) => void;
}

const encoder = new TextEncoder();

/**
 * The scheduler's side of vmq: publish commands with ids and dedupe, wait for their outcome,
 * read the view and the host registry, follow events, ask live queries.
 */
export class VmqClient {
  readonly names: Names;
  readonly js: JetStreamClient;
  #jsm: JetStreamManager | undefined;
  #vms: KV | undefined;
  readonly #timeoutMs: number;
  /** Placement with memory of its own recent choices (see Placer). */
  readonly placer: Placer;

  constructor(
    readonly nc: NatsConnection,
    opts: VmqClientOptions = {},
  ) {
    this.names = namesFor(opts.prefix);
    this.js = jetstream(nc);
    this.#timeoutMs = opts.timeoutMs ?? 60_000;
    this.placer = new Placer(() => this.hosts());
  }

  async #manager(): Promise<JetStreamManager> {
    return (this.#jsm ??= await jetstreamManager(this.nc));
  }

  /** Publishes a command (assigning a commandId) and waits for its outcome. */
  async send(
    host: string,
    body: CommandBody,
    opts: { timeoutMs?: number } = {},
  ): Promise<SendResult> {
    const { command, seq } = await this.publish(host, body);
    const timeoutMs = opts.timeoutMs ?? this.#timeoutMs;
    const found = await this.waitForOutcome(host, command.vmId, command.commandId, {
      timeoutMs,
      fromSeq: 0,
    });
    return { commandId: command.commandId, seq, ...found };
  }

  /** Publishes without waiting; the commandId doubles as Nats-Msg-Id. */
  async publish(
    host: string,
    body: CommandBody,
  ): Promise<{ command: Command; seq: number; duplicate: boolean }> {
    const command = Command.parse({
      version: 1,
      commandId: randomUUID(),
      issuedAt: new Date().toISOString(),
      ...body,
    });
    const ack = await this.js.publish(
      this.names.cmd(host, command.vmId),
      encoder.encode(JSON.stringify(command)),
      {
        msgID: command.commandId,
      },
    );
    return { command, seq: ack.seq, duplicate: ack.duplicate };
  }

  /** Waits for the command's outcome event (scanning the VM's history, then following it). */
  async waitForOutcome(
    host: string,
    vmId: string,
    commandId: string,
    opts: {
      timeoutMs?: number;
      fromSeq?: number;
      /** Called once the worker has recorded the command's intent (vm.command-accepted). */
      onAccepted?: (event: VmEvent, seq: number) => void;
    } = {},
  ): Promise<{ outcome: VmEvent; outcomeSeq: number; accepted: boolean }> {
    const timeoutMs = opts.timeoutMs ?? this.#timeoutMs;
    const signal = AbortSignal.timeout(timeoutMs);
    let accepted = false;
    for await (const { event, seq } of this.watch(
      { host, vmId },
      { afterSeq: opts.fromSeq ?? 0, signal },
    )) {
      if (event.causationId !== commandId) continue;
      if (event.type === "vm.command-accepted") {
        if (!accepted) opts.onAccepted?.(event, seq);
        accepted = true;
        continue;
      }
      return { outcome: event, outcomeSeq: seq, accepted };
    }
    throw new VmqError(
      accepted ? "client::outcome-timeout" : "client::not-accepted",
      accepted
        ? `command ${commandId} was accepted by ${host} but has no outcome after ${timeoutMs} ms`
        : `command ${commandId} was not even accepted by ${host} within ${timeoutMs} ms`,
      {
        hint: accepted
          ? "The VM may still be working; follow it with vmq events --follow."
          : `Is the worker of host ${host} running? (vmq hosts)`,
      },
    );
  }

  /** Typed events of one VM, one host or all hosts, from any point in history, as they come. */
  async *watch(
    target: { host?: string; vmId?: string } = {},
    opts: WatchOptions = {},
  ): AsyncGenerator<{ event: VmEvent; seq: number }> {
    const filter = this.names
      .evt(target.host ?? "*", target.vmId ?? (target.host ? "*" : ">"))
      .replace(/\.\*\.>$/, ".>");
    const start = opts.newOnly
      ? { deliver_policy: DeliverPolicy.New }
      : opts.since
        ? { deliver_policy: DeliverPolicy.StartTime, opt_start_time: opts.since.toISOString() }
        : opts.afterSeq
          ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: opts.afterSeq + 1 }
          : { deliver_policy: DeliverPolicy.All };
    const oc = await this.js.consumers.get(this.names.eventsStream, {
      filter_subjects: filter,
      ...start,
    });
    // Short fetches in a loop rather than consume(): consume() was seen to stall on its last
    // messages under load, and a fetch's expiry gives the abort signal a chance every second.
    let current: { stop(): void } | undefined;
    const stop = () => current?.stop();
    opts.signal?.addEventListener("abort", stop, { once: true });
    try {
      if (opts.toEnd && (await oc.info(true)).num_pending === 0) return;
      while (!opts.signal?.aborted) {
        // The fetch itself (it may first re-create the ordered consumer) also yields to abort.
        const batch = await untilAborted(
          oc.fetch({ max_messages: 256, expires: 1_000 }),
          opts.signal,
        );
        if (!batch) break;
        current = batch;
        for await (const m of batch) {
          const parsed = upcastEvent(jsonOf(m.data));
          if (parsed.ok) yield { event: parsed.event, seq: m.seq };
          else if (opts.onUnreadable)
            opts.onUnreadable({ seq: m.seq, subject: m.subject, message: parsed.message });
          else {
            throw new VmqError("client::unreadable-event", `${parsed.message} (seq ${m.seq})`, {
              hint: "A newer vmq wrote it: upgrade this client, or pass onUnreadable to skip such events.",
            });
          }
          if (opts.toEnd && m.info.pending === 0) return;
        }
      }
    } finally {
      opts.signal?.removeEventListener("abort", stop);
      current?.stop();
      await oc.delete().catch(() => false);
    }
  }

  /** Every event of one VM so far. */
  async history(host: string, vmId: string): Promise<{ event: VmEvent; seq: number }[]> {
    const jsm = await this.#manager();
    const info = await jsm.streams.info(this.names.eventsStream, {
      subjects_filter: this.names.evt(host, vmId),
    });
    const total = info.state.subjects?.[this.names.evt(host, vmId)] ?? 0;
    const out: { event: VmEvent; seq: number }[] = [];
    if (total === 0) return out;
    for await (const e of this.watch({ host, vmId }, { signal: AbortSignal.timeout(30_000) })) {
      out.push(e);
      if (out.length >= total) break;
    }
    return out;
  }

  async #vmsKv(): Promise<KV> {
    return (this.#vms ??= await new Kvm(this.nc).open(this.names.vmsBucket));
  }

  /** The VM's current view (from `vmq-vms`), or undefined. */
  async get(vmId: string): Promise<VmView | undefined> {
    const e = await (await this.#vmsKv()).get(vmId);
    if (!e || e.operation !== "PUT") return undefined;
    return VmView.parse(e.json());
  }

  async list(filter: { host?: string; state?: string } = {}): Promise<VmView[]> {
    const out: VmView[] = [];
    for (const { data } of await latestValues(await this.#manager(), this.names.vmsBucket)) {
      const v = parseJson(data, VmView);
      if (
        v &&
        (!filter.host || v.host === filter.host) &&
        (!filter.state || v.state === filter.state)
      )
        out.push(v);
    }
    return out.sort((a, b) => a.vmId.localeCompare(b.vmId));
  }

  /** Live host records (a host that stopped beating has expired from the bucket). */
  async hosts(): Promise<HostRecord[]> {
    const out: HostRecord[] = [];
    for (const { data } of await latestValues(await this.#manager(), this.names.hostsBucket)) {
      const r = parseJson(data, HostRecord);
      if (r) out.push(r);
    }
    return out.sort((a, b) => a.host.localeCompare(b.host));
  }

  /** A live query answered by the VM's host worker. */
  async query<Q extends QueryName>(
    host: string,
    vmId: string,
    query: Q,
    timeoutMs = 15_000,
  ): Promise<QueryReply<Q>> {
    const m = await this.nc.request(this.names.api(host, vmId, query), undefined, {
      timeout: timeoutMs,
    });
    return QUERY_REPLY_SCHEMAS[query].parse(m.json()) as QueryReply<Q>;
  }

  // ---- conveniences ------------------------------------------------------------------------

  /** The host a VM lives on, from the view (or the one given). */
  async hostOf(vmId: string, host?: string): Promise<string> {
    if (host) return host;
    const v = await this.get(vmId);
    if (!v) {
      throw new VmqError(
        "client::vm-unknown",
        `VM ${vmId} is not in the ${this.names.vmsBucket} view`,
        {
          hint: "Pass its host explicitly, or check the vmId (vmq list).",
        },
      );
    }
    return v.host;
  }

  /** Prepares a VM on the given host, or on one chosen by placement. */
  async prepare(
    vmId: string,
    spec: VmSpecInput,
    opts: CommonOptions & { placement?: PlacementRequest } = {},
  ): Promise<SendResult> {
    let host = opts.host;
    if (!host) {
      const p = await this.placer.place({
        ...(spec.backend ? { backend: spec.backend } : {}),
        ...opts.placement,
      });
      if (!p) {
        throw new VmqError("client::no-host", "no live host can take this VM", {
          hint: "Check vmq hosts: a host must be heartbeating and offer the backend and capabilities asked for.",
        });
      }
      host = p.host;
    }
    return this.send(host, { type: "vm.prepare", vmId, spec, ...common(opts) }, timeout(opts));
  }
  async start(vmId: string, opts: CommonOptions = {}): Promise<SendResult> {
    return this.send(
      await this.hostOf(vmId, opts.host),
      { type: "vm.start", vmId, ...common(opts) },
      timeout(opts),
    );
  }
  async suspend(vmId: string, opts: CommonOptions = {}): Promise<SendResult> {
    return this.send(
      await this.hostOf(vmId, opts.host),
      { type: "vm.suspend", vmId, ...common(opts) },
      timeout(opts),
    );
  }
  async resume(vmId: string, opts: CommonOptions = {}): Promise<SendResult> {
    return this.send(
      await this.hostOf(vmId, opts.host),
      { type: "vm.resume", vmId, ...common(opts) },
      timeout(opts),
    );
  }
  async stop(
    vmId: string,
    opts: CommonOptions & { stopTimeoutMs?: number; force?: StopForce } = {},
  ): Promise<SendResult> {
    const extra = {
      ...(opts.stopTimeoutMs === undefined ? {} : { timeoutMs: opts.stopTimeoutMs }),
      ...(opts.force ? { force: opts.force } : {}),
    };
    return this.send(
      await this.hostOf(vmId, opts.host),
      { type: "vm.stop", vmId, ...extra, ...common(opts) },
      timeout(opts),
    );
  }
  async destroy(
    vmId: string,
    opts: CommonOptions & { stopTimeoutMs?: number } = {},
  ): Promise<SendResult> {
    const extra = opts.stopTimeoutMs === undefined ? {} : { timeoutMs: opts.stopTimeoutMs };
    return this.send(
      await this.hostOf(vmId, opts.host),
      { type: "vm.destroy", vmId, ...extra, ...common(opts) },
      timeout(opts),
    );
  }

  /** The guest's IP address, asked live from its host. */
  async guestIp(vmId: string, opts: { host?: string } = {}): Promise<string> {
    return (await this.guestAddress(vmId, opts)).ip;
  }

  /** The guest's address and the host ports forwarded to it (QEMU user networking). */
  async guestAddress(vmId: string, opts: { host?: string } = {}): Promise<GuestAddress> {
    const r = await this.query(await this.hostOf(vmId, opts.host), vmId, "guest-ip");
    if (!r.ok)
      throw new VmqError(
        receivedCode(r.error.code),
        r.error.message,
        r.error.hint ? { hint: r.error.hint } : {},
      );
    const { ok: _ok, ...address } = r;
    return address;
  }

  /** Where the VM's console is, on its host. */
  async consoleEndpoint(vmId: string, opts: { host?: string } = {}): Promise<ConsoleEndpoint> {
    const r = await this.query(await this.hostOf(vmId, opts.host), vmId, "console");
    if (!r.ok)
      throw new VmqError(
        receivedCode(r.error.code),
        r.error.message,
        r.error.hint ? { hint: r.error.hint } : {},
      );
    return r.console;
  }

  /** An interactive serial console relayed over NATS by the VM's host worker. */
  async openConsole(vmId: string, opts: { host?: string } = {}): Promise<ConsoleSession> {
    const host = await this.hostOf(vmId, opts.host);
    const m = await this.nc.request(`${this.names.consoleSubject(host, vmId)}.open`, undefined, {
      timeout: 15_000,
    });
    const r = m.json<
      | { ok: true; session: string; subject: string }
      | { ok: false; error: { code: string; message: string; hint?: string } }
    >();
    if (!r.ok)
      throw new VmqError(
        receivedCode(r.error.code),
        r.error.message,
        r.error.hint ? { hint: r.error.hint } : {},
      );
    return new ConsoleSession(this.nc, r.subject);
  }
}

export interface CommonOptions {
  host?: string;
  correlationId?: string;
  expectedVersion?: number;
  /** How long to wait for the outcome. */
  timeoutMs?: number;
}
const common = (o: CommonOptions) => ({
  ...(o.correlationId ? { correlationId: o.correlationId } : {}),
  ...(o.expectedVersion === undefined ? {} : { expectedVersion: o.expectedVersion }),
});
const timeout = (o: CommonOptions) => (o.timeoutMs === undefined ? {} : { timeoutMs: o.timeoutMs });

/** One console session: bytes from the VM as an async iterator, write() to type, close() to end. */
export class ConsoleSession {
  readonly #sub: Subscription;
  readonly #closedSub: Subscription;
  readonly #ping: NodeJS.Timeout;
  /** Why the worker ended the session, once it has. */
  closedReason: string | undefined;

  constructor(
    private readonly nc: NatsConnection,
    readonly subject: string,
  ) {
    this.#sub = nc.subscribe(`${subject}.out`);
    this.#closedSub = nc.subscribe(`${subject}.closed`, {
      callback: (_e, m) => {
        this.closedReason = m.string();
        this.#sub.unsubscribe();
      },
    });
    this.#ping = setInterval(() => nc.publish(`${subject}.ping`), 5_000);
    this.#ping.unref();
  }

  write(data: Uint8Array | string): void {
    this.nc.publish(
      `${this.subject}.in`,
      typeof data === "string" ? new TextEncoder().encode(data) : data,
    );
  }

  async *output(): AsyncGenerator<Uint8Array> {
    for await (const m of this.#sub) yield m.data;
  }

  close(): void {
    clearInterval(this.#ping);
    this.nc.publish(`${this.subject}.close`);
    this.#sub.unsubscribe();
    this.#closedSub.unsubscribe();
  }
}

const decoder = new TextDecoder();
/** A record from the bucket, or undefined when it is not JSON or not of the schema. */
function parseJson<T>(
  data: Uint8Array,
  schema: { safeParse(v: unknown): { success: boolean; data?: T } },
): T | undefined {
  const r = schema.safeParse(jsonOf(data));
  return r.success ? r.data : undefined;
}

/** The payload as JSON, or undefined when it is not JSON (a schema then refuses it). */
function jsonOf(data: Uint8Array): unknown {
  try {
    return JSON.parse(decoder.decode(data));
  } catch {
    return undefined;
  }
}
