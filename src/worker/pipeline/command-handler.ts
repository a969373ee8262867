import { commandVmToken, parseCommand, type Command } from "../../contracts/index.js";
import {
  decide,
  failed,
  hasSeen,
  moveToCheck,
  refusal,
  rejected,
  type Decision,
  type Vm,
} from "../../domain/index.js";
import { isVmqError, toVmqError } from "../../lib/errors.js";
import { failpoint } from "../../lib/failpoints.js";
import { recordable } from "../../lib/user-data.js";
import { withBindings, type BoundLogger } from "../../observability/logger.js";
import { stopTimes } from "./backend-call.js";
import { rejectBadInput, type BadInput } from "./bad-input.js";
import { CommandExecution } from "./command-execution.js";
import type { EarlierCommand } from "./order-gate.js";
import type { PipelineDeps } from "./pipeline-deps.js";
import { afterRecordingFailure, redeliveryDelay } from "./retry-policy.js";
import { ABANDON, ACK, nak, TERM, type CommandMessage, type Settlement } from "./settlement.js";

/** A command waiting behind one sent back comes back this long after that one is due. */
const ORDER_MARGIN_MS = 250;

/**
 * One command, start to finish: validate, keep the VM's order, decide, record the intent before
 * touching the backend, run it under a deadline, record the outcome. It returns what is to
 * happen to the message (ack, term, nak with a delay, or abandon); the consumer does it.
 */
export class CommandHandler {
  readonly #execution: CommandExecution;

  constructor(private readonly deps: PipelineDeps) {
    this.#execution = new CommandExecution(deps);
  }

  async handle(msg: CommandMessage): Promise<Settlement> {
    const { deps } = this;
    if (msg.info.redelivered) deps.stats.redeliveries++;
    const parsed = parseCommand(msg.data, commandVmToken(msg.subject));
    if (!parsed.ok) return rejectBadInput(deps, msg, parsed);
    const command = parsed.command;
    const unsealable = sealedElsewhere(command, deps);
    if (unsealable) return rejectBadInput(deps, msg, unsealable);
    const log = withBindings(deps.log, {
      vmId: command.vmId,
      commandId: command.commandId,
      type: command.type,
      seq: msg.seq,
    });
    const settlement = await this.#handle(msg, command, log);
    // The order gate follows every settlement: a command sent back holds its VM's later ones.
    if (settlement.kind === "ack" || settlement.kind === "term")
      deps.order.forget(command.vmId, msg.seq);
    else if (settlement.kind === "nak")
      deps.order.defer({
        seq: msg.seq,
        subject: msg.subject,
        data: msg.data,
        headers: msg.headers,
        command,
        retryAt: Date.now() + settlement.delayMs,
      });
    return settlement;
  }

  async #handle(msg: CommandMessage, command: Command, log: BoundLogger): Promise<Settlement> {
    const { deps } = this;
    try {
      // Steady state has nothing ahead of a command (one map lookup, no await).
      if (deps.order.mayHaveEarlier(command.vmId)) {
        const wait = await this.#inOrder(msg, command, log);
        if (wait) return wait;
      }
      return await this.#run(msg, command, log);
    } catch (e) {
      const err = toVmqError(e);
      const step = afterRecordingFailure({
        draining: deps.abandon.aborted,
        delivery: msg.info.deliveryCount,
        maxDeliver: deps.limits.maxDeliver,
      });
      switch (step.kind) {
        case "abandon":
          log.warn(
            { code: err.code },
            "abandoned by the drain; the intent stays recorded and the command goes back to the stream",
          );
          return ABANDON;
        case "give-up":
          return this.#exhausted(msg, command, err.message, log);
        case "redeliver":
          // NATS trouble while recording: JetStream brings the command back later, and the
          // VM's record is written again (a view write may have been lost meanwhile).
          log.error(
            { err, code: err.code, delayMs: step.delayMs },
            "could not finish the command; it will be redelivered",
          );
          deps.fleet.refresh(command.vmId);
          return nak(step.delayMs);
      }
    }
  }

  /**
   * Commands of one VM run in stream order: an earlier one that a dead worker held runs first,
   * here, once. Returns a nak when an earlier one still has no outcome (it was sent back, or its
   * run here did not finish): this command then goes back to the stream, to come after it.
   */
  async #inOrder(
    msg: CommandMessage,
    command: Command,
    log: BoundLogger,
  ): Promise<Settlement | undefined> {
    const { deps } = this;
    let reloaded = false;
    for (;;) {
      deps.abandon.throwIfAborted(); // a drain sends this one back as it is
      const vm = deps.streams.get(command.vmId);
      const seen = { has: (id: string) => hasSeen(vm, id) };
      const [first] = await deps.order.earlier(command.vmId, msg.subject, msg.seq, seen);
      if (!first) return undefined;
      if (first.kind === "held" && !reloaded) {
        // Before running anything again, make sure the VM is as the stream says, not as this
        // process last saw it (an append whose PubAck was lost may have landed after all).
        reloaded = true;
        await deps.streams.reload(command.vmId);
        continue;
      }
      if (first.kind === "deferred" || !deps.order.firstTry(first.seq)) {
        // Behind one this process sent back: come back just after it is due, not on a backoff
        // of our own (which grows with every round and lets a busy VM's commands convoy).
        // Behind one a dead worker holds: its redelivery time is unknown, so back off.
        const delay =
          first.kind === "deferred" && first.retryAt !== undefined
            ? Math.min(30_000, Math.max(0, first.retryAt - Date.now()) + ORDER_MARGIN_MS)
            : redeliveryDelay(msg.info.deliveryCount);
        log.warn(
          { waitingFor: first.seq, delayMs: delay },
          "an earlier command of this VM has no outcome yet; this one waits for it",
        );
        return nak(delay);
      }
      log.warn(
        { earlier: first.seq, earlierId: first.command.commandId },
        "an earlier command of this VM has no outcome yet: running it first",
      );
      deps.stats.reordered++;
      // Its own delivery still owns its message and will find it done (a duplicate); what
      // is settled here only goes to the order gate.
      await this.handle(heldElsewhere(first));
    }
  }

  async #run(msg: CommandMessage, command: Command, log: BoundLogger): Promise<Settlement> {
    const { deps } = this;
    let decision = { kind: "duplicate" } as Decision; // set by the decide step below
    const { vm } = await deps.streams.update(command.vmId, async (vm) => {
      const now = deps.clock.now();
      // The intent records the command without plaintext user-data (digest and size instead).
      decision = decide(recordable(command), vm, {
        now,
        stopCrashAllowanceMs: deps.limits.stopCrashAllowanceMs,
      });
      if (decision.kind === "accept" && deps.cancels?.has(command.commandId)) {
        // Cancelled while queued: decided here, once, so it is cancelled or it runs, never both.
        const no = {
          code: "command::cancelled" as const,
          message: `${command.type} ${command.commandId} was cancelled before it could start`,
        };
        decision = { kind: "reject", rejection: no, event: rejected(vm, command, no, { now }) };
      }
      if (decision.kind === "accept") {
        // What only the host knows (backends, capabilities, other hosts) is checked before the
        // intent is recorded, so such a command touches nothing. Only a prepare asks NATS.
        const no = refusal(command, vm, {
          host: deps.host,
          backends: deps.router.tags,
          defaultBackend: deps.router.defaultBackend,
          canSuspend: (tag) => deps.router.capabilities()[tag]?.suspend ?? false,
          ownerElsewhere:
            command.type === "vm.prepare"
              ? await deps.fleet.ownerElsewhere(command.vmId)
              : undefined,
          moveUnderWay: await this.#moveUnderWay(command, vm),
        });
        if (no)
          decision = { kind: "reject", rejection: no, event: rejected(vm, command, no, { now }) };
      }
      if (decision.kind === "accept") failpoint("before-intent");
      return decision.kind === "accept" || decision.kind === "reject" ? decision.event : undefined;
    });
    switch (decision.kind) {
      case "duplicate":
        deps.stats.duplicates++;
        log.info("duplicate command: it already has an outcome; nothing done");
        return ACK;
      case "reject":
        deps.stats.count(command.type, "rejected");
        log.info({ code: decision.rejection.code }, decision.rejection.message);
        return ACK;
      case "accept":
        failpoint("after-intent");
        return this.#execution.run(
          msg,
          command,
          vm,
          new Date(decision.event.deadline),
          log,
          Date.parse(decision.event.at),
        );
      case "resume": {
        const now = deps.clock.now().getTime();
        const deadline = new Date(decision.deadline);
        // A stop or destroy goes on with what is left of its window (stop-schedule.ts).
        const left =
          command.type === "vm.stop" || command.type === "vm.destroy"
            ? stopTimes(command, vm, { now, deadline: deadline.getTime() })
            : {};
        log.info(left, "resuming a command whose intent is recorded but has no outcome");
        return this.#execution.run(msg, command, vm, deadline, log, now);
      }
    }
  }

  /** Only a start of a VM whose disk a move exported asks the moves bucket (moveToCheck). */
  async #moveUnderWay(command: Command, vm: Vm): Promise<boolean | undefined> {
    const move = moveToCheck(command, vm);
    if (!move) return undefined;
    return this.deps.moves ? this.deps.moves.underWay(vm.vmId, move.moveId) : true;
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
  ): Promise<Settlement> {
    const { deps } = this;
    try {
      await deps.deadLetters.put({
        subject: msg.subject,
        data: msg.data,
        headers: msg.headers,
        streamSeq: msg.seq,
        code: "command::max-deliveries",
        reason: `gave up after ${msg.info.deliveryCount} deliveries`,
        attempts: msg.info.deliveryCount,
        lastError,
      });
    } catch {
      // Left to JetStream, which gives up on it now, and to the max-deliveries mover.
      return ABANDON;
    }
    deps.stats.deadLettered++;
    const vm = deps.streams.get(command.vmId);
    const failure = {
      code: "command::max-deliveries",
      message: `gave up after ${msg.info.deliveryCount} deliveries (${lastError}); see the DLQ`,
      retryable: false,
    };
    await this.#execution
      .recordOutcome(
        failed(vm, command, failure, msg.info.deliveryCount, { now: deps.clock.now() }),
        command,
      )
      .catch((e: unknown) =>
        log.error({ err: e }, "dead-lettered, but its failure could not be recorded"),
      );
    return TERM;
  }
}

/**
 * An earlier command read back from the stream, run ahead of its own delivery: that delivery
 * still owns the message and finds the command done (a duplicate); a failure leaves it deferred.
 */
function heldElsewhere(e: EarlierCommand): CommandMessage {
  return {
    subject: e.subject,
    data: e.data,
    seq: e.seq,
    headers: e.headers,
    info: { redelivered: true, deliveryCount: 1 },
  };
}

/**
 * A prepare whose user-data is sealed to another key, or does not open with this host's: bad
 * input, refused before anything is recorded. What it opens to is dropped at once.
 */
function sealedElsewhere(command: Command, deps: PipelineDeps): BadInput | undefined {
  const sealed = command.type === "vm.prepare" ? command.spec.cloudInit?.sealedUserData : undefined;
  if (!sealed) return undefined;
  try {
    deps.hostKey.open(sealed);
    return undefined;
  } catch (e) {
    const wrongHost = isVmqError(e, "userdata::wrong-host");
    return {
      ok: false,
      code: wrongHost ? "userdata::wrong-host" : "userdata::unsealable",
      message: isVmqError(e) ? e.message : "sealed user-data could not be opened",
      vmId: command.vmId,
      commandId: command.commandId,
      type: command.type,
    };
  }
}
