import type { Command, VmEvent } from "../../contracts/index.js";
import { driftAfterFailure, failed, hasSeen, succeeded, type Vm } from "../../domain/index.js";
import { toVmqError, VmqError } from "../../lib/errors.js";
import { failpoint } from "../../lib/failpoints.js";
import { DeadlineSignals, sleep } from "../../lib/time.js";
import type { BoundLogger } from "../../observability/logger.js";
import { backendCall } from "./backend-call.js";
import type { PipelineDeps } from "./pipeline-deps.js";
import { afterBackendFailure } from "./retry-policy.js";
import { ACK, nak, type CommandMessage, type Settlement } from "./settlement.js";

/**
 * The part of a command after its intent is recorded: the backend call under the command's
 * deadline, transient failures retried by the retry policy, and exactly one outcome recorded.
 */
export class CommandExecution {
  /** Commands' deadlines; a drain that gives up aborts them all. */
  readonly #deadlines: DeadlineSignals;

  constructor(private readonly deps: PipelineDeps) {
    this.#deadlines = new DeadlineSignals(deps.abandon);
  }

  async run(
    msg: CommandMessage,
    command: Command,
    vm: Vm,
    deadline: Date,
    log: BoundLogger,
    /** When this run began (epoch ms): the accepted event's time for a fresh command. */
    startedAt: number = this.deps.clock.now().getTime(),
  ): Promise<Settlement> {
    const { deps } = this;
    const { signal, dispose } = this.#deadlines.acquire(deadline);
    // No keep-alive timer of its own: the consumer sends working() for every message it holds
    // (queued or running) that is older than a third of ack_wait.
    deps.stats.inFlight++;
    const began = Date.now();
    let outcome: VmEvent | undefined;
    /** Set when a transient failure outlasted this delivery's attempts: retried by JetStream. */
    let retryInMs = 1_000;
    try {
      for (let attempt = 1; ; attempt++) {
        try {
          // A retry goes on with the time that is left, it does not start the stop's window again.
          const now = attempt === 1 ? startedAt : deps.clock.now().getTime();
          const timing = { now, deadline: deadline.getTime() };
          const result = await backendCall(
            deps.router,
            command,
            vm,
            signal,
            timing,
            deps.hostKey,
            deps.images,
            deps.disks,
          );
          failpoint("in-backend");
          outcome = succeeded(vm, command, result, { now: deps.clock.now() });
          break;
        } catch (e) {
          if (deps.abandon.aborted) throw e;
          let err = toVmqError(e, "hypervisor::failed");
          if (signal.aborted || err.code === "hypervisor::aborted") {
            err = new VmqError(
              "command::deadline-exceeded",
              `${command.type} did not finish by its deadline ${deadline.toISOString()}`,
              { cause: err },
            );
          }
          const step = afterBackendFailure({
            retryable: err.retryable,
            deadlinePassed: signal.aborted,
            attempt,
            maxAttempts: deps.limits.maxAttempts,
            delivery: msg.info.deliveryCount,
            maxDeliver: deps.limits.maxDeliver,
            now: Date.now(),
            deadline: deadline.getTime(),
          });
          if (step.kind === "retry") {
            log.warn(
              { code: err.code, attempt, retryInMs: step.waitMs },
              `transient failure: ${err.message}`,
            );
            await sleep(step.waitMs, deps.abandon);
            continue;
          }
          if (step.kind === "redeliver") {
            // Back to the stream with a growing delay: the intent stays recorded, the
            // redelivery resumes it, and the VM's later commands wait.
            log.warn(
              {
                code: err.code,
                attempt,
                delivery: msg.info.deliveryCount,
                retryInMs: step.delayMs,
              },
              `transient failure persists: retried by redelivery: ${err.message}`,
            );
            retryInMs = step.delayMs;
            break;
          }
          log.warn({ code: err.code, attempt }, `command failed: ${err.message}`);
          outcome = await this.#failure(command, vm, err, attempt);
          break;
        }
      }
    } finally {
      dispose();
      deps.stats.inFlight--;
    }
    if (!outcome) {
      deps.stats.retried++;
      return nak(retryInMs);
    }
    await this.recordOutcome(outcome, command);
    failpoint("after-outcome");
    deps.stats.count(command.type, outcome.type === "vm.command-failed" ? "failed" : "succeeded");
    deps.stats.onDuration?.(command.type, Date.now() - began);
    // debug, not info: at thousands of commands a second a line each would be most of the
    // worker's cost, and the events stream already records every outcome.
    log.debug(
      { outcome: outcome.type, state: outcome.state, ms: Date.now() - began },
      "command done",
    );
    failpoint("before-ack");
    return ACK;
  }

  /** The action happened (or failed for good): its outcome must land, unless it has one already. */
  async recordOutcome(event: VmEvent, command: Command): Promise<void> {
    await this.deps.streams.update(command.vmId, (vm) =>
      hasSeen(vm, command.commandId) ? undefined : event,
    );
  }

  /** The failure event; for anything but prepare, what the backend now says is recorded first. */
  async #failure(command: Command, vm: Vm, err: VmqError, attempt: number): Promise<VmEvent> {
    const { deps } = this;
    if (command.type !== "vm.prepare" && vm.handle) {
      const now = await deps.router
        .state(vm.handle, { signal: AbortSignal.timeout(5_000) })
        .catch(() => "unknown" as const);
      const drift = driftAfterFailure(
        vm,
        now,
        { command: command.type, code: err.code },
        { now: deps.clock.now(), eventId: `${vm.vmId}:obs:${deps.ids.newId()}` },
      );
      if (drift) vm = (await deps.streams.update(vm.vmId, () => drift)).vm;
    }
    const failure = {
      code: err.code,
      message: err.message,
      retryable: err.retryable,
      ...(err.hint ? { hint: err.hint } : {}),
    };
    return failed(vm, command, failure, attempt, { now: deps.clock.now() });
  }
}
