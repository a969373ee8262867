import type { ConsumerMessages, JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import { AckPolicy, DeliverPolicy } from "@nats-io/jetstream";
import { commandVmToken, isValidId, parseCommand, type Names } from "../../contracts/index.js";
import { failed, hasSeen } from "../../domain/index.js";
import { advisoryStream } from "../../event-store/provision.js";
import type { Logger } from "../../observability/logger.js";
import { redeliveryDelay } from "../pipeline/retry-policy.js";
import type { CommandReader } from "../nats/command-reader.js";
import type { Clock, DeadLetters } from "../ports.js";
import type { Service } from "../service-stack.js";
import type { Decide, VmReader } from "../state/vm-streams.js";

interface MaxDeliverAdvisory {
  stream: string;
  consumer: string;
  stream_seq: number;
  deliveries: number;
}

export interface DlqMoverDeps {
  host: string;
  names: Names;
  js: JetStreamClient;
  jsm: JetStreamManager;
  /** Reads the host's own commands (never another host's: see command-reader.ts). */
  reader: Pick<CommandReader, "at">;
  vms: VmReader;
  deadLetters: DeadLetters;
  updateInLane: (vmId: string, decide: Decide) => Promise<unknown>;
  clock: Clock;
  log: Logger;
  /** Counts each command dead-lettered (a metric). */
  deadLettered: () => void;
  /** Told each stream sequence JetStream gave up on, once it is handled. */
  givenUp: (seq: number) => void;
}

/**
 * The backstop for commands that exhausted their deliveries (e.g. the worker crashed on them
 * every time): JetStream's MAX_DELIVERIES advisory is captured by a stream, so even one sent
 * while this worker was down is handled: the command is read back through the host's own
 * reader consumer, copied to the DLQ (cut to fit the server's max_payload) and, if it never
 * got an outcome, recorded as vm.command-failed with command::max-deliveries.
 */
export class DlqMover implements Service {
  readonly name = "DLQ mover";
  #messages: ConsumerMessages | undefined;
  #loop: Promise<void> | undefined;

  constructor(private readonly deps: DlqMoverDeps) {}

  async start(): Promise<void> {
    const { deps } = this;
    const stream = advisoryStream(deps.names);
    const durable = `dlq-${deps.host}`;
    const subject = `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.${deps.names.commandsStream}.${deps.names.durable(deps.host)}`;
    try {
      await deps.jsm.consumers.info(stream, durable);
    } catch {
      await deps.jsm.consumers.add(stream, {
        durable_name: durable,
        filter_subject: subject,
        ack_policy: AckPolicy.Explicit,
        deliver_policy: DeliverPolicy.All,
        ack_wait: 30_000_000_000,
      });
    }
    const consumer = await deps.js.consumers.get(stream, durable);
    this.#messages = await consumer.consume({ max_messages: 16 });
    const messages = this.#messages;
    this.#loop = (async () => {
      for await (const m of messages) {
        try {
          const advisory = m.json<MaxDeliverAdvisory>();
          await this.#move(advisory);
          deps.givenUp(advisory.stream_seq);
          m.ack();
        } catch (e) {
          // NATS trouble: the advisory comes back, later each time (not a tight loop).
          const delayMs = redeliveryDelay(m.info.deliveryCount);
          deps.log.error(
            { err: e, delayMs },
            "could not dead-letter an exhausted command; retrying later",
          );
          m.nak(delayMs);
        }
      }
    })().catch((e: unknown) => deps.log.error({ err: e }, "DLQ mover stopped"));
  }

  async #move(a: MaxDeliverAdvisory): Promise<void> {
    const { deps } = this;
    // Through the host's own reader (filter <prefix>.cmd.<host>.>): a worker may not read the
    // commands stream by sequence, which would reach every host's commands.
    const stored = await deps.reader.at(deps.names.cmdFilter(deps.host), a.stream_seq);
    if (!stored) return; // expired from the audit trail: nothing left to copy
    const vmId = stored.subject.split(".")[3] ?? "";
    const parsed = parseCommand(stored.data, commandVmToken(stored.subject));
    const vm = isValidId(vmId) ? deps.vms.get(vmId) : undefined;
    if (parsed.ok && vm && hasSeen(vm, parsed.command.commandId)) {
      // It did get its outcome (only its acks were lost): nothing for an operator to retry.
      deps.log.info(
        { vmId, seq: a.stream_seq, deliveries: a.deliveries },
        "command exhausted its deliveries but has its outcome: not dead-lettered",
      );
      return;
    }
    await deps.deadLetters.put({
      subject: stored.subject,
      data: stored.data,
      headers: stored.headers,
      streamSeq: a.stream_seq,
      code: "command::max-deliveries",
      reason: `JetStream gave up after ${a.deliveries} deliveries`,
      attempts: a.deliveries,
      ...(vm?.state ? { vmState: vm.state } : {}),
    });
    deps.deadLettered();
    deps.log.warn(
      { vmId, seq: a.stream_seq, deliveries: a.deliveries },
      "command exhausted its deliveries: dead-lettered",
    );
    if (!parsed.ok || !isValidId(vmId)) return;
    const command = parsed.command;
    const failure = {
      code: "command::max-deliveries",
      message: `gave up after ${a.deliveries} deliveries; see the DLQ`,
      retryable: false,
    };
    await deps.updateInLane(vmId, (v) =>
      hasSeen(v, command.commandId)
        ? undefined
        : failed(v, command, failure, a.deliveries, { now: deps.clock.now() }),
    );
  }

  async stop(): Promise<void> {
    this.#messages?.stop();
    await this.#loop;
  }
}
