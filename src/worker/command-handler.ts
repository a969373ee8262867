import {
  COMMAND_TYPES,
  VmHandle,
  VmView,
  commandVmToken,
  isValidId,
  parseCommand,
  type BackendTag,
  type Command,
  type ParseFailure,
  type VmEvent,
} from "../contracts/index.js";
import {
  decide,
  failed,
  rejected,
  type Rejection,
  observed,
  rejectInvalid,
  succeeded,
  type CommandResult,
  type Vm,
} from "../domain/index.js";
import { isVmqError, toVmqError, VmqError } from "../lib/errors.js";
import { failpoint } from "../lib/failpoints.js";
import { backoffMs, DeadlineSignals, sleep } from "../lib/time.js";
import { withBindings, type BoundLogger } from "../observability/logger.js";
import type { WorkerContext } from "./context.js";
import { deadLetter } from "./dlq.js";
import type { CommandMessage, EarlierCommand } from "./order-gate.js";

const MAX_CONFLICT_RETRIES = 8;
/** A command waiting behind one sent back comes back this long after that one is due. */
const ORDER_MARGIN_MS = 250;

/**
 * One command, start to finish: validate, load the VM, decide, record the intent before
 * touching the backend, run it under a deadline, record the outcome, then ack. Every path
 * ends in exactly one of ack / term / nak / abandon (redelivery after a restart).
 */
export class CommandHandler {
  /** Commands' deadlines; a drain that gives up aborts them all. */
  readonly #deadlines: DeadlineSignals;

  constructor(private readonly ctx: WorkerContext) {
    this.#deadlines = new DeadlineSignals(ctx.abandon);
  }

  async handle(msg: CommandMessage): Promise<void> {
    const { ctx } = this;
    if (msg.info.redelivered) ctx.stats.redeliveries++;
    const vmToken = commandVmToken(msg.subject);
    const parsed = parseCommand(msg.data, vmToken);
    if (!parsed.ok) return this.#badInput(msg, parsed);
    const command = parsed.command;
    const log = withBindings(ctx.log, {
      vmId: command.vmId,
      commandId: command.commandId,
      type: command.type,
      seq: msg.seq,
    });
    try {
      // Steady state has nothing ahead of a command (one map lookup, no await).
      if (ctx.order.mayHaveEarlier(command.vmId) && !(await this.#inOrder(msg, command, log)))
        return;
      await this.#run(msg, command, log);
    } catch (e) {
      const err = toVmqError(e);
      if (ctx.abandon.aborted) {
        log.warn(
          { code: err.code },
          "abandoned by the drain; the intent stays recorded and the command goes back to the stream",
        );
        msg.nak(); // straight back, for the next worker of this host to resume
        return;
      }
      if (msg.info.deliveryCount >= ctx.config.maxDeliver) {
        await this.#exhausted(msg, command, err.message, log).catch(() => undefined);
        return;
      }
      // NATS trouble while recording: let JetStream bring the command back later.
      const delay = backoffMs(msg.info.deliveryCount, 1_000, 30_000);
      log.error(
        { err, code: err.code, delayMs: delay },
        "could not finish the command; it will be redelivered",
      );
      ctx.registry.markDirty(command.vmId);
      this.#sendBack(msg, command, delay);
    }
  }

  /**
   * Commands of one VM run in stream order: an earlier one that a dead worker held runs first,
   * here, once. Returns false when an earlier one still has no outcome (it was sent back, or
   * its run here did not finish): this command then goes back to the stream, to come after it.
   */
  async #inOrder(msg: CommandMessage, command: Command, log: BoundLogger): Promise<boolean> {
    const { ctx } = this;
    let reloaded = false;
    for (;;) {
      ctx.abandon.throwIfAborted(); // a drain sends this one back as it is
      const seen = ctx.registry.get(command.vmId).seenCommands;
      const [first] = await ctx.order.earlier(command.vmId, msg.subject, msg.seq, seen);
      if (!first) return true;
      if (first.kind === "held" && !reloaded) {
        // Before running anything again, make sure the VM is as the stream says, not as this
        // process last saw it (an append whose PubAck was lost may have landed after all).
        reloaded = true;
        await ctx.registry.reload(command.vmId);
        continue;
      }
      if (first.kind === "deferred" || !ctx.order.firstTry(first.seq)) {
        // Behind one this process sent back: come back just after it is due, not on a backoff
        // of our own (which grows with every round and lets a busy VM's commands convoy).
        // Behind one a dead worker holds: its redelivery time is unknown, so back off.
        const delay =
          first.kind === "deferred" && first.retryAt !== undefined
            ? Math.min(30_000, Math.max(0, first.retryAt - Date.now()) + ORDER_MARGIN_MS)
            : backoffMs(msg.info.deliveryCount, 1_000, 30_000);
        log.warn(
          { waitingFor: first.seq, delayMs: delay },
          "an earlier command of this VM has no outcome yet; this one waits for it",
        );
        this.#sendBack(msg, command, delay);
        return false;
      }
      log.warn(
        { earlier: first.seq, earlierId: first.command.commandId },
        "an earlier command of this VM has no outcome yet: running it first",
      );
      ctx.stats.reordered++;
      await this.handle(heldElsewhere(first));
    }
  }

  /** nak, and remember it so the VM's later commands wait for this one. */
  #sendBack(msg: CommandMessage, command: Command, delayMs: number): void {
    this.ctx.order.defer({
      seq: msg.seq,
      subject: msg.subject,
      data: msg.data,
      headers: msg.headers,
      command,
      retryAt: Date.now() + delayMs,
    });
    msg.nak(delayMs);
  }

  async #run(msg: CommandMessage, command: Command, log: BoundLogger): Promise<void> {
    const { ctx } = this;
    for (let round = 0; round < MAX_CONFLICT_RETRIES; round++) {
      const vm = ctx.registry.get(command.vmId);
      let decision = decide(command, vm, { now: ctx.now() });
      if (decision.kind === "accept") {
        // What only the worker knows (backends, capabilities, other hosts) is checked before
        // the intent is recorded, so such a command touches nothing.
        // Only a prepare asks NATS (the view); the other checks need no await.
        const refusal =
          command.type === "vm.prepare"
            ? await this.#prepareRefusal(command.vmId, command.spec.backend)
            : this.#refusal(command, vm);
        if (refusal) {
          decision = {
            kind: "reject",
            rejection: refusal,
            event: rejected(vm, command, refusal, { now: ctx.now() }),
          };
        }
      }

      if (decision.kind === "duplicate") {
        ctx.stats.duplicates++;
        log.info("duplicate command: it already has an outcome; nothing done");
        this.#settle(msg, command);
        return;
      }
      if (decision.kind === "reject") {
        const event = decision.event;
        if (!(await this.#tryAppend(event, vm))) continue;
        ctx.stats.count(command.type, "rejected");
        log.info({ code: decision.rejection.code }, decision.rejection.message);
        this.#settle(msg, command);
        return;
      }
      let current = vm;
      let deadline: Date;
      if (decision.kind === "accept") {
        failpoint("before-intent");
        const seq = await this.#tryAppend(decision.event, vm);
        failpoint("after-intent");
        if (!seq) continue;
        current = ctx.registry.get(command.vmId);
        deadline = new Date(decision.event.deadline);
      } else {
        deadline = new Date(decision.deadline);
        log.info("resuming a command whose intent is recorded but has no outcome");
      }
      await this.#execute(msg, command, current, deadline, log);
      return;
    }
    throw new VmqError(
      "event-store::conflict",
      `VM ${command.vmId} kept changing under this command`,
      { retryable: true },
    );
  }

  /** Runs the backend call with retries, then records exactly one outcome. */
  async #execute(
    msg: CommandMessage,
    command: Command,
    vm: Vm,
    deadline: Date,
    log: BoundLogger,
  ): Promise<void> {
    const { ctx } = this;
    const { signal, dispose } = this.#deadlines.acquire(deadline);
    // No keep-alive timer of its own: the consumer sends working() for every message it holds
    // (queued or running) that is older than a third of ack_wait.
    ctx.stats.inFlight++;
    const began = Date.now();
    let outcome: VmEvent | undefined;
    /** Set when a transient failure outlasted this delivery's attempts: retried by JetStream. */
    let retryInMs: number | undefined;
    try {
      let attempt = 0;
      for (;;) {
        attempt++;
        try {
          const result = await this.#call(command, vm, signal);
          failpoint("in-backend");
          outcome = succeeded(vm, command, result, { now: ctx.now() });
          break;
        } catch (e) {
          if (ctx.abandon.aborted) throw e;
          let err = toVmqError(e, "hypervisor::failed");
          if (signal.aborted || err.code === "hypervisor::aborted") {
            err = new VmqError(
              "command::deadline-exceeded",
              `${command.type} did not finish by its deadline ${deadline.toISOString()}`,
              { retryable: true, cause: err },
            );
          }
          const wait = backoffMs(attempt, 250, 5_000);
          const lastDelivery = msg.info.deliveryCount >= ctx.config.maxDeliver;
          if (
            err.retryable &&
            attempt < ctx.config.maxAttempts &&
            !signal.aborted &&
            Date.now() + wait < deadline.getTime() &&
            !lastDelivery
          ) {
            log.warn(
              { code: err.code, attempt, retryInMs: wait },
              `transient failure: ${err.message}`,
            );
            await sleep(wait, ctx.abandon);
            continue;
          }
          // Still transient after this delivery's attempts: back to the stream with a growing
          // delay (the intent stays recorded; the redelivery resumes it, the VM's later
          // commands wait). The last delivery, or one that would pass the deadline, records it.
          const later = backoffMs(msg.info.deliveryCount, 1_000, 30_000);
          if (
            err.retryable &&
            !signal.aborted &&
            !lastDelivery &&
            Date.now() + later < deadline.getTime()
          ) {
            log.warn(
              { code: err.code, attempt, delivery: msg.info.deliveryCount, retryInMs: later },
              `transient failure persists: retried by redelivery: ${err.message}`,
            );
            retryInMs = later;
            break;
          }
          log.warn({ code: err.code, attempt }, `command failed: ${err.message}`);
          outcome = await this.#failure(command, vm, err, attempt);
          break;
        }
      }
    } finally {
      dispose();
      ctx.stats.inFlight--;
    }
    if (!outcome) {
      ctx.stats.retried++;
      this.#sendBack(msg, command, retryInMs ?? 1_000);
      return;
    }
    await this.#appendOutcome(outcome, command);
    failpoint("after-outcome");
    ctx.stats.count(command.type, outcome.type === "vm.command-failed" ? "failed" : "succeeded");
    ctx.stats.onDuration?.(command.type, Date.now() - began);
    // debug, not info: at thousands of commands a second a line each would be most of the
    // worker's cost, and the events stream already records every outcome.
    log.debug(
      { outcome: outcome.type, state: outcome.state, ms: Date.now() - began },
      "command done",
    );
    failpoint("before-ack");
    this.#settle(msg, command);
  }

  /** Acks a command that has its outcome; if it was sent back before, nothing waits for it now. */
  #settle(msg: CommandMessage, command: Command): void {
    this.ctx.order.forget(command.vmId, msg.seq);
    msg.ack();
  }

  /** The failure event; for anything but prepare, what the backend now says is recorded first. */
  async #failure(command: Command, vm: Vm, err: VmqError, attempt: number): Promise<VmEvent> {
    const { ctx } = this;
    if (command.type !== "vm.prepare" && vm.handle) {
      const now = await ctx.router
        .state(vm.handle, { signal: AbortSignal.timeout(5_000) })
        .catch(() => "unknown" as const);
      const drift = observed(
        vm,
        now,
        "reconcile",
        { now: ctx.now(), eventId: `${vm.vmId}:obs:${ctx.newId()}` },
        { detail: `after ${command.type} failed with ${err.code}` },
      );
      if (drift && now !== "unknown") {
        await this.#appendObserved(drift);
        vm = ctx.registry.get(vm.vmId);
      }
    }
    return failed(
      vm,
      command,
      {
        code: err.code,
        message: err.message,
        retryable: err.retryable,
        ...(err.hint ? { hint: err.hint } : {}),
      },
      attempt,
      { now: ctx.now() },
      // A prepare the backend could not be reached for may or may not have left something.
      command.type === "vm.prepare" && err.code.endsWith("::unreachable")
        ? { state: "unknown" }
        : {},
    );
  }

  async #call(command: Command, vm: Vm, signal: AbortSignal): Promise<CommandResult> {
    const { router } = this.ctx;
    const handle = vm.handle ?? this.#stubHandle(vm);
    switch (command.type) {
      case "vm.prepare": {
        const spec = { ...command.spec, backend: command.spec.backend ?? router.defaultBackend };
        return { handle: await router.prepare(command.vmId, spec, { signal }), spec };
      }
      case "vm.start":
        return { handle: await router.start(handle, { signal }) };
      case "vm.suspend":
        return { handle: await router.suspend(handle, { signal }) };
      case "vm.resume":
        return { handle: await router.resume(handle, { signal }) };
      case "vm.stop": {
        const r = await router.stop(handle, {
          timeoutMs: command.timeoutMs,
          force: command.force,
          signal,
        });
        return { handle: r.handle, how: r.how };
      }
      case "vm.destroy":
        await router.destroy(handle, {
          timeoutMs: command.timeoutMs,
          force: "after-timeout",
          signal,
        });
        return {};
    }
  }

  /** A VM whose prepare never finished has no handle; the backend finds it by id. */
  #stubHandle(vm: Vm): VmHandle {
    return VmHandle.parse({
      id: vm.vmId,
      name: vm.spec?.name ?? vm.vmId,
      backend: vm.spec?.backend ?? this.ctx.router.defaultBackend,
      workDir: "",
    });
  }

  /** Appends; on a sequence conflict reloads the VM and returns 0 so the caller re-decides. */
  async #tryAppend(event: VmEvent, vm: Vm): Promise<number> {
    try {
      const seq = await this.ctx.store.append(event, vm.version);
      this.ctx.registry.apply(event, seq);
      return seq;
    } catch (e) {
      if (!isVmqError(e, "event-store::conflict")) throw e;
      this.ctx.stats.conflicts++;
      this.ctx.log.warn(
        { vmId: vm.vmId, details: e.details },
        "another writer touched the VM: reloading and deciding again",
      );
      await this.ctx.registry.reload(vm.vmId);
      return 0;
    }
  }

  /** The action happened: its outcome must land, whatever else was appended meanwhile. */
  async #appendOutcome(event: VmEvent, command: Command): Promise<void> {
    for (let round = 0; round < MAX_CONFLICT_RETRIES; round++) {
      const vm = this.ctx.registry.get(command.vmId);
      if (vm.seenCommands.has(command.commandId)) return;
      if (await this.#tryAppend(event, vm)) return;
    }
    throw new VmqError(
      "event-store::conflict",
      `could not record the outcome of ${command.commandId}`,
      { retryable: true },
    );
  }

  async #appendObserved(event: VmEvent): Promise<void> {
    for (let round = 0; round < MAX_CONFLICT_RETRIES; round++) {
      if (await this.#tryAppend(event, this.ctx.registry.get(event.vmId))) return;
    }
  }

  /** What only the worker knows about a prepare: its backend, and other hosts' VMs. */
  async #prepareRefusal(
    vmId: string,
    backend: BackendTag | undefined,
  ): Promise<Rejection | undefined> {
    const { router } = this.ctx;
    const tag = backend ?? router.defaultBackend;
    if (!router.has(tag)) {
      return {
        code: "hypervisor::backend-unavailable",
        message: `backend ${tag} is not configured on host ${this.ctx.host} (it has ${router.tags.join(", ")})`,
      };
    }
    const foreign = await this.#ownedElsewhere(vmId);
    if (foreign) return { code: "vm::exists", message: `VM ${vmId} exists on host ${foreign}` };
    return undefined;
  }

  /** A rejection the pure decider cannot know about (for anything but a prepare), or undefined. */
  #refusal(command: Command, vm: Vm): Rejection | undefined {
    const { router } = this.ctx;
    const tag = vm.handle?.backend ?? vm.spec?.backend;
    if (tag && !router.has(tag)) {
      return {
        code: "hypervisor::backend-unavailable",
        message: `VM ${vm.vmId} runs on backend ${tag}, which is not configured on host ${this.ctx.host}`,
      };
    }
    if (
      (command.type === "vm.suspend" || command.type === "vm.resume") &&
      tag &&
      !router.backend(tag).capabilities().suspend
    ) {
      return {
        code: "hypervisor::unsupported",
        message: `backend ${tag} cannot ${command.type.slice(3)} a VM`,
      };
    }
    return undefined;
  }

  /** Contract: a vmId that the view holds under another (live) host is taken. */
  async #ownedElsewhere(vmId: string): Promise<string | undefined> {
    try {
      const entry = await this.ctx.vmsView.get(vmId);
      if (!entry || entry.operation !== "PUT") return undefined;
      const view = VmView.safeParse(entry.json());
      if (view.success && view.data.host !== this.ctx.host && view.data.state !== "destroyed")
        return view.data.host;
    } catch {
      /* the view is advisory; the event stream decides for this host */
    }
    return undefined;
  }

  /**
   * The last delivery failed too: dead-letter it and record its outcome, so that the VM's later
   * commands stop waiting for it (the max-deliveries mover is the backstop when this fails).
   */
  async #exhausted(
    msg: CommandMessage,
    command: Command,
    lastError: string,
    log: BoundLogger,
  ): Promise<void> {
    await deadLetter(this.ctx.js, this.ctx.names, this.ctx.host, {
      subject: msg.subject,
      data: msg.data,
      headers: msg.headers,
      streamSeq: msg.seq,
      code: "command::max-deliveries",
      reason: `gave up after ${msg.info.deliveryCount} deliveries`,
      attempts: msg.info.deliveryCount,
      lastError,
    });
    this.ctx.stats.deadLettered++;
    this.ctx.order.forget(command.vmId, msg.seq);
    const vm = this.ctx.registry.get(command.vmId);
    if (!vm.seenCommands.has(command.commandId)) {
      await this.#appendOutcome(
        failed(
          vm,
          command,
          {
            code: "command::max-deliveries",
            message: `gave up after ${msg.info.deliveryCount} deliveries (${lastError}); see the DLQ`,
            retryable: false,
          },
          msg.info.deliveryCount,
          { now: this.ctx.now() },
        ),
        command,
      ).catch((e: unknown) =>
        log.error({ err: e }, "dead-lettered, but its failure could not be recorded"),
      );
    }
    msg.term();
  }

  /** Not JSON, schema failure, subject mismatch, too large, unknown type or version. */
  async #badInput(msg: CommandMessage, p: ParseFailure): Promise<void> {
    const { ctx } = this;
    const vmToken = commandVmToken(msg.subject);
    const log = ctx.log.child({
      vmId: isValidId(vmToken) ? vmToken : undefined,
      seq: msg.seq,
      code: p.code,
    });
    try {
      if (isValidId(vmToken)) {
        for (let round = 0; round < MAX_CONFLICT_RETRIES; round++) {
          const vm = ctx.registry.get(vmToken);
          // A commandId that already has an outcome gets no second one (it is still dead-lettered).
          if (p.commandId !== undefined && vm.seenCommands.has(p.commandId)) {
            ctx.stats.duplicates++;
            break;
          }
          const event = rejectInvalid(
            vm,
            {
              ...(p.commandId === undefined ? {} : { commandId: p.commandId }),
              code: p.code,
              message: p.message,
              streamSeq: msg.seq,
            },
            { now: ctx.now() },
          );
          if (await this.#tryAppend(event, vm)) break;
        }
      }
      await deadLetter(ctx.js, ctx.names, ctx.host, {
        subject: msg.subject,
        data: msg.data,
        headers: msg.headers,
        streamSeq: msg.seq,
        code: p.code,
        reason: p.message,
        attempts: msg.info.deliveryCount,
      });
      ctx.stats.deadLettered++;
      // Counted under its type only when that is a known one: a client's own strings as
      // metric labels would grow the series without end.
      ctx.stats.count(isCommandType(p.type) ? p.type : "invalid", "rejected");
      log.warn(`bad command dead-lettered: ${p.message}`);
      msg.term();
    } catch (e) {
      log.error({ err: e }, "could not dead-letter a bad command; it will be redelivered");
      msg.nak(backoffMs(msg.info.deliveryCount, 1_000, 30_000));
    }
  }
}

/**
 * An earlier command read back from the stream, run ahead of its own delivery: that delivery
 * still owns the ack and finds the command done (a duplicate); a failure leaves it deferred.
 */
function heldElsewhere(e: EarlierCommand): CommandMessage {
  const none = (): void => undefined;
  return {
    subject: e.subject,
    data: e.data,
    seq: e.seq,
    headers: e.headers,
    info: { redelivered: true, deliveryCount: 1 },
    ack: none,
    term: none,
    working: none,
    nak: none,
  };
}

const KNOWN_TYPES: ReadonlySet<string> = new Set(COMMAND_TYPES);
function isCommandType(t: string | undefined): t is string {
  return t !== undefined && KNOWN_TYPES.has(t);
}
