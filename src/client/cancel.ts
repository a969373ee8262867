import type { JetStreamClient, JetStreamManager, StoredMsg } from "@nats-io/jetstream";
import pMap from "p-map";
import {
  cancelKey,
  parseSubject,
  type CancelRecord,
  type Names,
  type VmEvent,
} from "../contracts/index.js";
import { isVmqError, VmqError } from "../lib/errors.js";
import { outcomeOf } from "./event-watch.js";

export interface CancelOptions {
  /** Where the command went (default: found in the commands stream by its commandId). */
  host?: string;
  vmId?: string;
  /** How long to wait for the command's outcome after the cancel is written (default 60 s). */
  timeoutMs?: number;
}

export interface CancelResult {
  commandId: string;
  host: string;
  vmId: string;
  /**
   * - `cancelled`: rejected with `command::cancelled`, it had no effect;
   * - `accepted`: its worker had accepted it before the cancel reached it, so it ran (or runs):
   *   `outcome` says how it ended, when it ended within the wait;
   * - `finished`: it was rejected for another reason (expired, illegal, ...) before the cancel
   *   counted: it never ran (`outcome`);
   * - `pending`: the cancel is recorded but the command has no outcome yet (its worker is down
   *   or busy): it is rejected with `command::cancelled` when its worker takes it.
   */
  result: "cancelled" | "accepted" | "finished" | "pending";
  outcome?: VmEvent;
  outcomeSeq?: number;
}

const encoder = new TextEncoder();
/** Without its vmId, a command is looked for among this many newest commands. */
const RECENT = 2_000;

/**
 * Cancels a queued command: writes a cancel its worker checks before it decides, then waits for
 * the command's outcome, which says what really happened (the cancel write is only a request).
 */
export async function cancelCommand(
  js: JetStreamClient,
  jsm: JetStreamManager,
  names: Names,
  commandId: string,
  opts: CancelOptions = {},
): Promise<CancelResult> {
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const { host, vmId } =
    opts.host && opts.vmId
      ? { host: opts.host, vmId: opts.vmId }
      : await findCommand(jsm, names, commandId, opts);
  const base = { commandId, host, vmId };
  // Written first, before anything is read: the sooner it is stored, the likelier it counts.
  // For a command already decided it is inert (the worker checks it only before accepting).
  const record: CancelRecord = {
    version: 1,
    commandId,
    host,
    vmId,
    requestedAt: new Date().toISOString(),
  };
  await js.publish(
    `$KV.${names.cancelsBucket}.${cancelKey(host, commandId)}`,
    encoder.encode(JSON.stringify(record)),
  );
  try {
    // From the VM's first event: an outcome recorded before the cancel is found too.
    const { outcome, outcomeSeq } = await outcomeOf(js, names, host, vmId, commandId, {
      timeoutMs,
      fromSeq: 0,
    });
    const rejected = outcome.type === "vm.command-rejected";
    const result =
      rejected && outcome.code === "command::cancelled"
        ? "cancelled"
        : rejected
          ? "finished"
          : "accepted";
    return { ...base, result, outcome, outcomeSeq };
  } catch (e) {
    if (isVmqError(e, "client::not-accepted")) return { ...base, result: "pending" };
    if (isVmqError(e, "client::outcome-timeout")) return { ...base, result: "accepted" };
    throw e;
  }
}

/**
 * The host and VM of a published command, from its Nats-Msg-Id in the commands stream, read by
 * sequence (requests, never a consumer: a scheduler may not pull from a worker's consumer).
 * Only the newest RECENT commands are looked at (a cancel is for a command still queued).
 */
export async function findCommand(
  jsm: JetStreamManager,
  names: Names,
  commandId: string,
  where: { host?: string; vmId?: string } = {},
): Promise<{ host: string; vmId: string }> {
  const stream = names.commandsStream;
  const found = (m: StoredMsg | null) => {
    if (m?.header?.get("Nats-Msg-Id") !== commandId) return undefined;
    const s = parseSubject(m.subject);
    return s && (!where.host || s.host === where.host) && (!where.vmId || s.vmId === where.vmId)
      ? { host: s.host, vmId: s.vmId }
      : undefined;
  };
  const { state } = await jsm.streams.info(stream);
  const from = Math.max(state.first_seq, state.last_seq - RECENT + 1);
  const seqs = Array.from(
    { length: Math.max(0, state.last_seq - from + 1) },
    (_, i) => state.last_seq - i,
  );
  let hit: { host: string; vmId: string } | undefined;
  await pMap(
    seqs,
    async (seq) => {
      if (hit) return;
      const m = found(await jsm.streams.getMessage(stream, { seq }).catch(() => null));
      if (m) hit = m; // never `hit ??= found(await ...)`: a later miss would overwrite it
    },
    { concurrency: 32 },
  );
  if (hit) return hit;
  throw new VmqError(
    "client::command-unknown",
    `no command ${commandId} in ${stream} among its newest ${RECENT} commands`,
    {
      hint: "Check the commandId (printed when the command was published); for an older command give its --host and --vm.",
    },
  );
}
