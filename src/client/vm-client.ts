import { randomUUID } from "node:crypto";
import {
  jetstream,
  jetstreamManager,
  type JetStreamClient,
  type JetStreamManager,
} from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import type { ConsoleSession } from "./console-session.js";
import { DeadLetters } from "./dead-letters.js";
import { latestValues } from "./kv-scan.js";
import { commandTooLarge, parseJson, refusedAsTooLarge } from "./wire.js";
import type { CommandBody, SendResult, VmqClientOptions, WatchOptions } from "./client-types.js";
import { Placer, type PlacementRequest } from "./placement.js";
import { sealSpecFor, type SealOptions } from "./sealing.js";
import { outcomeOf, vmHistory, watchEvents, type OutcomeWait } from "./event-watch.js";
import { OwnWrites } from "./own-writes.js";
import { ViewReads, type ReadOptions, type ReadStats } from "./view-reads.js";
import { cancelCommand, type CancelOptions, type CancelResult } from "./cancel.js";
import { move, type MoveOptions } from "./move.js";
import { askQuery, consoleEndpointOf, guestAddressOf, openConsoleOn } from "./live-queries.js";
import {
  Command,
  HostRecord,
  describeIssues,
  type MoveRecord,
  type VmEvent,
  type VmView,
  names as namesFor,
  type ConsoleEndpoint,
  type GuestAddress,
  type StopForce,
  type VmSpecInput,
  type Names,
  type QueryName,
  type QueryReply,
  MAX_COMMAND_BYTES,
} from "../contracts/index.js";
import { VmqError } from "../lib/errors.js";

export type { CommandBody, SendResult, VmqClientOptions, WatchOptions } from "./client-types.js";
export type { ReadOptions, ReadStats } from "./view-reads.js";
export type { CancelOptions, CancelResult } from "./cancel.js";
export type { MoveOptions } from "./move.js";

const encoder = new TextEncoder();

/**
 * The scheduler's side of vmq: publish commands with ids and dedupe, wait for their outcome,
 * read the view and the host registry (seeing this client's own writes), follow events, ask
 * live queries, cancel queued commands.
 */
export class VmqClient {
  readonly names: Names;
  readonly js: JetStreamClient;
  #jsm: JetStreamManager | undefined;
  readonly #timeoutMs: number;
  /** Placement with memory of its own recent choices (see Placer). */
  readonly placer: Placer;
  /** The outcomes this client saw, per VM: what its reads wait for (read-your-writes). */
  readonly ownWrites = new OwnWrites();
  readonly #views: ViewReads;

  constructor(
    readonly nc: NatsConnection,
    opts: VmqClientOptions = {},
  ) {
    this.names = namesFor(opts.prefix);
    this.js = jetstream(nc);
    this.#timeoutMs = opts.timeoutMs ?? 60_000;
    this.placer = new Placer(() => this.hosts());
    this.#views = new ViewReads(
      () => this.#manager(),
      this.names,
      this.ownWrites,
      opts.viewWaitMs ?? 250,
    );
  }

  async #manager(): Promise<JetStreamManager> {
    return (this.#jsm ??= await jetstreamManager(this.nc));
  }

  /** How this client's view reads were answered: fresh at once, after waiting, or by a fold. */
  get readStats(): ReadStats {
    return { ...this.#views.stats };
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
    return { commandId: command.commandId, host, seq, ...found };
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

  /**
   * Waits for the command's outcome event (scanning the VM's history, then following it). The
   * outcome's sequence is remembered: this client's later reads of the VM wait for it.
   */
  async waitForOutcome(
    host: string,
    vmId: string,
    commandId: string,
    opts: Partial<OutcomeWait> = {},
  ): Promise<{ outcome: VmEvent; outcomeSeq: number; accepted: boolean }> {
    const found = await outcomeOf(this.js, this.names, host, vmId, commandId, {
      ...opts,
      timeoutMs: opts.timeoutMs ?? this.#timeoutMs,
    });
    this.ownWrites.saw(vmId, host, found.outcomeSeq);
    return found;
  }

  /** Typed events of one VM, one host or all hosts, from any point in history, as they come. */
  watch(
    target: { host?: string; vmId?: string } = {},
    opts: WatchOptions = {},
  ): AsyncGenerator<{ event: VmEvent; seq: number }> {
    return watchEvents(this.js, this.names, target, opts);
  }

  /** Every event of one VM so far. */
  async history(host: string, vmId: string): Promise<{ event: VmEvent; seq: number }[]> {
    return vmHistory(this.js, await this.#manager(), this.names, host, vmId);
  }

  /**
   * The VM's current view, or undefined. It reflects at least `atLeastSeq` (default: the newest
   * outcome this client saw for the VM): a `vmq-vms` record that lags is waited for up to
   * `viewWaitMs`, then the VM's events after it are folded in. A VM absent from the view but
   * with events (prepared a moment ago by anyone) is folded from its events.
   */
  async get(vmId: string, opts: ReadOptions = {}): Promise<VmView | undefined> {
    return this.#views.get(vmId, opts);
  }

  /** The VMs of the view, with this client's own writes even when the view lags behind them. */
  async list(
    filter: { host?: string; state?: string } = {},
    opts: Pick<ReadOptions, "viewWaitMs"> = {},
  ): Promise<VmView[]> {
    return this.#views.list(filter, opts);
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
    return askQuery(this.nc, this.names, host, vmId, query, timeoutMs);
  }

  /**
   * Cancels a queued command: it ends as vm.command-rejected `command::cancelled` if its worker
   * had not accepted it yet. The result says what really happened (see CancelResult).
   */
  async cancel(commandId: string, opts: CancelOptions = {}): Promise<CancelResult> {
    const r = await cancelCommand(this.js, await this.#manager(), this.names, commandId, {
      timeoutMs: this.#timeoutMs,
      ...opts,
    });
    if (r.outcomeSeq !== undefined) this.ownWrites.saw(r.vmId, r.host, r.outcomeSeq);
    return r;
  }

  // ---- conveniences ------------------------------------------------------------------------

  /** The host a VM lives on, from the view (read-your-writes: see get), or the one given. */
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
    return this.#lifecycle(vmId, { type: "vm.start", vmId, ...common(opts) }, opts);
  }
  async suspend(vmId: string, opts: CommonOptions = {}): Promise<SendResult> {
    return this.#lifecycle(vmId, { type: "vm.suspend", vmId, ...common(opts) }, opts);
  }
  async resume(vmId: string, opts: CommonOptions = {}): Promise<SendResult> {
    return this.#lifecycle(vmId, { type: "vm.resume", vmId, ...common(opts) }, opts);
  }
  async stop(
    vmId: string,
    opts: CommonOptions & { stopTimeoutMs?: number; force?: StopForce } = {},
  ): Promise<SendResult> {
    const extra = {
      ...(opts.stopTimeoutMs === undefined ? {} : { timeoutMs: opts.stopTimeoutMs }),
      ...(opts.force ? { force: opts.force } : {}),
    };
    return this.#lifecycle(vmId, { type: "vm.stop", vmId, ...extra, ...common(opts) }, opts);
  }
  async destroy(
    vmId: string,
    opts: CommonOptions & { stopTimeoutMs?: number } = {},
  ): Promise<SendResult> {
    const extra = opts.stopTimeoutMs === undefined ? {} : { timeoutMs: opts.stopTimeoutMs };
    return this.#lifecycle(vmId, { type: "vm.destroy", vmId, ...extra, ...common(opts) }, opts);
  }
  async #lifecycle(vmId: string, body: CommandBody, opts: CommonOptions): Promise<SendResult> {
    return this.send(await this.hostOf(vmId, opts.host), body, timeout(opts));
  }

  /**
   * Moves the VM to another live host, cold (stop, export its disk, prepare and start it there,
   * destroy it here), or takes up its move under way; see src/client/move.ts.
   */
  async move(vmId: string, opts: MoveOptions): Promise<MoveRecord> {
    return move(this, vmId, opts);
  }

  /** The guest's IP address, asked live from its host. */
  async guestIp(vmId: string, opts: { host?: string } = {}): Promise<string> {
    return (await this.guestAddress(vmId, opts)).ip;
  }

  /** The guest's address and the host ports forwarded to it (QEMU user networking). */
  async guestAddress(vmId: string, opts: { host?: string } = {}): Promise<GuestAddress> {
    return guestAddressOf(this.nc, this.names, await this.hostOf(vmId, opts.host), vmId);
  }

  /** Where the VM's console is, on its host. */
  async consoleEndpoint(vmId: string, opts: { host?: string } = {}): Promise<ConsoleEndpoint> {
    return consoleEndpointOf(this.nc, this.names, await this.hostOf(vmId, opts.host), vmId);
  }

  /** An interactive serial console relayed over NATS by the VM's host worker. */
  async openConsole(vmId: string, opts: { host?: string } = {}): Promise<ConsoleSession> {
    return openConsoleOn(this.nc, this.names, await this.hostOf(vmId, opts.host), vmId);
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
