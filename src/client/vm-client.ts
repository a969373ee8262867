import { randomUUID } from "node:crypto";
import {
  DeliverPolicy,
  jetstream,
  jetstreamManager,
  type JetStreamClient,
  type JetStreamManager,
} from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { ConsoleSession } from "./console-session.js";
import { DeadLetters } from "./dead-letters.js";
import { latestValues } from "./kv-scan.js";
import { commandTooLarge, jsonOf, parseJson, refusedAsTooLarge } from "./wire.js";
import type { CommandBody, SendResult, VmqClientOptions, WatchOptions } from "./client-types.js";
import { Placer, type PlacementRequest } from "./placement.js";
import { sealSpecFor, type SealOptions } from "./sealing.js";
import {
  Command,
  HostRecord,
  describeIssues,
  QUERY_REPLY_SCHEMAS,
  type VmEvent,
  type VmView,
  currentView,
  viewRecordAt,
  names as namesFor,
  upcastEvent,
  type ConsoleEndpoint,
  type GuestAddress,
  type StopForce,
  type VmSpecInput,
  type Names,
  type QueryName,
  type QueryReply,
  MAX_COMMAND_BYTES,
} from "../contracts/index.js";
import { receivedCode, VmqError } from "../lib/errors.js";
import { untilAborted } from "../lib/time.js";

export type { CommandBody, SendResult, VmqClientOptions, WatchOptions } from "./client-types.js";

const encoder = new TextEncoder();

/**
 * The scheduler's side of vmq: publish commands with ids and dedupe, wait for their outcome,
 * read the view and the host registry, follow events, ask live queries.
 */
export class VmqClient {
  readonly names: Names;
  readonly js: JetStreamClient;
  #jsm: JetStreamManager | undefined;
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
    opts: {
      timeoutMs?: number;
      /** Leave the command queued past the wait (no notAfter): it runs whenever a worker can. */
      keepQueued?: boolean;
    } = {},
  ): Promise<SendResult> {
    const timeoutMs = opts.timeoutMs ?? this.#timeoutMs;
    // A command this call stops waiting for must not run later behind the caller's back.
    const notAfter =
      body.notAfter ??
      (opts.keepQueued ? undefined : new Date(Date.now() + timeoutMs).toISOString());
    const { command, seq } = await this.publish(host, {
      ...body,
      ...(notAfter === undefined ? {} : { notAfter }),
    });
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
    const parsed = Command.safeParse({
      version: 1,
      commandId: randomUUID(),
      issuedAt: new Date().toISOString(),
      ...body,
    });
    // Refused here, before publishing: the worker would only reject it (and dead-letter it).
    if (!parsed.success)
      throw new VmqError(
        "command::invalid",
        `invalid ${body.type}: ${describeIssues(parsed.error)}`,
        {
          hint: `Check the command against schemas/commands/${body.type}.v1.json.`,
        },
      );
    const command = parsed.data;
    const data = encoder.encode(JSON.stringify(command));
    if (data.length > MAX_COMMAND_BYTES) throw commandTooLarge(data.length);
    const ack = await this.js
      .publish(this.names.cmd(host, command.vmId), data, { msgID: command.commandId })
      .catch((e: unknown) => {
        throw refusedAsTooLarge(e, data.length);
      });
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

  /**
   * The VM's current view (from `vmq-vms`), or undefined: the newest record under any host
   * (`<host>.<vmId>`, one direct get), else a v1 record keyed by the vmId alone. A record that
   * names another host than its key is forged and ignored.
   */
  async get(vmId: string): Promise<VmView | undefined> {
    const jsm = await this.#manager();
    const bucket = this.names.vmsBucket;
    for (const key of [`*.${vmId}`, vmId]) {
      const m = await jsm.direct.getMessage(`KV_${bucket}`, {
        last_by_subj: `$KV.${bucket}.${key}`,
      });
      if (!m) continue;
      const op = m.header?.get("KV-Operation");
      if (op === "DEL" || op === "PURGE") return undefined;
      return viewRecordAt(m.subject.slice(`$KV.${bucket}.`.length), jsonOf(m.data));
    }
    return undefined;
  }

  async list(filter: { host?: string; state?: string } = {}): Promise<VmView[]> {
    const byVm = new Map<string, { key: string; view: VmView }[]>();
    for (const { key, data } of await latestValues(await this.#manager(), this.names.vmsBucket)) {
      const view = viewRecordAt(key, jsonOf(data));
      if (view) byVm.set(view.vmId, [...(byVm.get(view.vmId) ?? []), { key, view }]);
    }
    const out: VmView[] = [];
    for (const records of byVm.values()) {
      const v = currentView(records);
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

  /** The dead-letter stream: list, show, retry, drop. */
  async deadLetters(): Promise<DeadLetters> {
    return new DeadLetters(this, await this.#manager());
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

  /** Prepares a VM on the given host, or on one chosen by placement; user-data is sealed to it. */
  async prepare(
    vmId: string,
    spec: VmSpecInput,
    opts: CommonOptions & SealOptions & { placement?: PlacementRequest } = {},
  ): Promise<SendResult> {
    let host = opts.host;
    if (!host) {
      const p = await this.placer.place({
        ...(spec.backend ? { backend: spec.backend } : {}),
        ...opts.placement,
      });
      if (!p)
        throw new VmqError("client::no-host", "no live host can take this VM", {
          hint: "Check vmq hosts: a host must be heartbeating and offer the backend and capabilities asked for.",
        });
      host = p.host;
    }
    spec = await sealSpecFor(() => this.hosts(), host, spec, opts); // after placement
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

  /**
   * An interactive serial console relayed over NATS by the VM's host worker. The session's
   * output is subscribed to before the open request is sent, so no early byte is lost.
   */
  async openConsole(vmId: string, opts: { host?: string } = {}): Promise<ConsoleSession> {
    const host = await this.hostOf(vmId, opts.host);
    const base = this.names.consoleSubject(host, vmId);
    const id = randomUUID().replaceAll("-", "");
    let session = new ConsoleSession(this.nc, `${base}.${id}`);
    let r:
      | { ok: true; session: string; subject: string }
      | { ok: false; error: { code: string; message: string; hint?: string } };
    try {
      const m = await this.nc.request(
        `${base}.open`,
        encoder.encode(JSON.stringify({ session: id })),
        {
          timeout: 15_000,
        },
      );
      r = m.json();
    } catch (e) {
      session.close();
      throw e;
    }
    if (!r.ok) {
      session.close();
      throw new VmqError(
        receivedCode(r.error.code),
        r.error.message,
        r.error.hint ? { hint: r.error.hint } : {},
      );
    }
    if (r.subject !== session.subject) {
      // A worker from before client-chosen sessions picked its own id.
      session.close();
      session = new ConsoleSession(this.nc, r.subject);
    }
    return session;
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
