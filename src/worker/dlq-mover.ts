import type { ConsumerMessages, JetStreamManager } from "@nats-io/jetstream";
import { AckPolicy, DeliverPolicy } from "@nats-io/jetstream";
import { isValidId, parseCommand } from "../contracts/index.js";
import { failed, type Vm } from "../domain/index.js";
import { advisoryStream } from "../event-store/provision.js";
import type { VmEvent } from "../contracts/index.js";
import type { WorkerContext } from "./context.js";
import { deadLetter } from "./dlq.js";

interface MaxDeliverAdvisory {
  stream: string;
  consumer: string;
  stream_seq: number;
  deliveries: number;
}

/**
 * The backstop for commands that exhausted their deliveries (e.g. the worker crashed on them
 * every time): JetStream's MAX_DELIVERIES advisory is captured by a stream, so even one sent
 * while this worker was down is handled: the command is copied to the DLQ and, if it never got
 * an outcome, recorded as vm.command-failed with command::max-deliveries.
 */
export class DlqMover {
  #messages: ConsumerMessages | undefined;
  #loop: Promise<void> | undefined;

  constructor(
    private readonly ctx: WorkerContext,
    private readonly jsm: JetStreamManager,
    private readonly appendSerial: (
      vmId: string,
      make: (vm: Vm) => VmEvent | undefined,
    ) => Promise<void>,
    /** Told each stream sequence JetStream gave up on, once it is handled. */
    private readonly onGivenUp: (seq: number) => void = () => undefined,
  ) {}

  async start(): Promise<void> {
    const { ctx } = this;
    const stream = advisoryStream(ctx.names);
    const durable = `dlq-${ctx.host}`;
    const subject = `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.${ctx.names.commandsStream}.${ctx.names.durable(ctx.host)}`;
    try {
      await this.jsm.consumers.info(stream, durable);
    } catch {
      await this.jsm.consumers.add(stream, {
        durable_name: durable,
        filter_subject: subject,
        ack_policy: AckPolicy.Explicit,
        deliver_policy: DeliverPolicy.All,
        ack_wait: 30_000_000_000,
      });
    }
    const consumer = await ctx.js.consumers.get(stream, durable);
    this.#messages = await consumer.consume({ max_messages: 16 });
    const messages = this.#messages;
    this.#loop = (async () => {
      for await (const m of messages) {
        try {
          const advisory = m.json<MaxDeliverAdvisory>();
          await this.#move(advisory);
          this.onGivenUp(advisory.stream_seq);
          m.ack();
        } catch (e) {
          ctx.log.error({ err: e }, "could not dead-letter an exhausted command; retrying later");
          m.nak(5_000);
        }
      }
    })().catch((e: unknown) => ctx.log.error({ err: e }, "DLQ mover stopped"));
  }

  async #move(a: MaxDeliverAdvisory): Promise<void> {
    const { ctx } = this;
    const stored = await this.jsm.streams
      .getMessage(ctx.names.commandsStream, { seq: a.stream_seq })
      .catch(() => null);
    if (!stored) return; // expired from the audit trail: nothing left to copy
    const vmId = stored.subject.split(".")[3] ?? "";
    const parsed = parseCommand(stored.data, vmId);
    const vm = isValidId(vmId) ? ctx.registry.get(vmId) : undefined;
    if (parsed.ok && vm?.seenCommands.has(parsed.command.commandId)) {
      // It did get its outcome (only its acks were lost): nothing for an operator to retry.
      ctx.log.info(
        { vmId, seq: a.stream_seq, deliveries: a.deliveries },
        "command exhausted its deliveries but has its outcome: not dead-lettered",
      );
      return;
    }
    await deadLetter(ctx.js, ctx.names, ctx.host, {
      subject: stored.subject,
      data: stored.data,
      headers: stored.header,
      streamSeq: a.stream_seq,
      code: "command::max-deliveries",
      reason: `JetStream gave up after ${a.deliveries} deliveries`,
      attempts: a.deliveries,
      ...(vm?.state ? { vmState: vm.state } : {}),
    });
    ctx.stats.deadLettered++;
    ctx.log.warn(
      { vmId, seq: a.stream_seq, deliveries: a.deliveries },
      "command exhausted its deliveries: dead-lettered",
    );
    if (!parsed.ok || !isValidId(vmId)) return;
    const command = parsed.command;
    await this.appendSerial(vmId, (v) =>
      v.seenCommands.has(command.commandId)
        ? undefined
        : failed(
            v,
            command,
            {
              code: "command::max-deliveries",
              message: `gave up after ${a.deliveries} deliveries; see the DLQ`,
              retryable: false,
            },
            a.deliveries,
            { now: ctx.now() },
          ),
    );
  }

  async stop(): Promise<void> {
    this.#messages?.stop();
    await this.#loop;
  }
}
