import { DeliverPolicy, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import { upcastEvent, type Names, type VmEvent } from "../contracts/index.js";
import { VmqError } from "../lib/errors.js";
import { untilAborted } from "../lib/time.js";
import type { WatchOptions } from "./client-types.js";
import { jsonOf } from "./wire.js";

/** Reading the events stream: following it, one VM's history, and waiting for an outcome. */

/** Typed events of one VM, one host or all hosts, from any point in history, as they come. */
export async function* watchEvents(
  js: JetStreamClient,
  names: Names,
  target: { host?: string; vmId?: string } = {},
  opts: WatchOptions = {},
): AsyncGenerator<{ event: VmEvent; seq: number }> {
  const filter = names
    .evt(target.host ?? "*", target.vmId ?? (target.host ? "*" : ">"))
    .replace(/\.\*\.>$/, ".>");
  const start = opts.newOnly
    ? { deliver_policy: DeliverPolicy.New }
    : opts.since
      ? { deliver_policy: DeliverPolicy.StartTime, opt_start_time: opts.since.toISOString() }
      : opts.afterSeq
        ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: opts.afterSeq + 1 }
        : { deliver_policy: DeliverPolicy.All };
  const oc = await js.consumers.get(names.eventsStream, { filter_subjects: filter, ...start });
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
export async function vmHistory(
  js: JetStreamClient,
  jsm: JetStreamManager,
  names: Names,
  host: string,
  vmId: string,
): Promise<{ event: VmEvent; seq: number }[]> {
  const info = await jsm.streams.info(names.eventsStream, {
    subjects_filter: names.evt(host, vmId),
  });
  const total = info.state.subjects?.[names.evt(host, vmId)] ?? 0;
  const out: { event: VmEvent; seq: number }[] = [];
  if (total === 0) return out;
  for await (const e of watchEvents(
    js,
    names,
    { host, vmId },
    { signal: AbortSignal.timeout(30_000) },
  )) {
    out.push(e);
    if (out.length >= total) break;
  }
  return out;
}

export interface OutcomeWait {
  timeoutMs: number;
  fromSeq?: number;
  /** Called once the worker has recorded the command's intent (vm.command-accepted). */
  onAccepted?: (event: VmEvent, seq: number) => void;
}

/** Waits for the command's outcome event (scanning the VM's history, then following it). */
export async function outcomeOf(
  js: JetStreamClient,
  names: Names,
  host: string,
  vmId: string,
  commandId: string,
  opts: OutcomeWait,
): Promise<{ outcome: VmEvent; outcomeSeq: number; accepted: boolean }> {
  const signal = AbortSignal.timeout(opts.timeoutMs);
  let accepted = false;
  for await (const { event, seq } of watchEvents(
    js,
    names,
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
      ? `command ${commandId} was accepted by ${host} but has no outcome after ${opts.timeoutMs} ms`
      : `command ${commandId} was not even accepted by ${host} within ${opts.timeoutMs} ms`,
    {
      hint: accepted
        ? "The VM may still be working; follow it with vmq events --follow."
        : `Is the worker of host ${host} running? (vmq hosts)`,
    },
  );
}
