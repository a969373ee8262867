import { randomUUID } from "node:crypto";
import { jetstreamManager, type JetStreamClient } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { names as namesFor, type Names } from "../../src/contracts/index.js";

export const SPEC = { name: "bench", imagePath: "/images/base.qcow2", vcpus: 1, memoryMb: 256 };
const encoder = new TextEncoder();

/** A prefix no other measurement uses. */
export const benchPrefix = (tag: string): string =>
  `b${tag.replace(/[^a-z0-9]/gi, "").toLowerCase()}${Math.random().toString(36).slice(2, 8)}`;

export interface PlannedCommand {
  subject: string;
  vmId: string;
  commandId: string;
  data: Uint8Array;
}

/** The body of the n-th command (0-based) of a VM: prepare once, then start/stop alternately. */
export function commandBody(vmId: string, n: number, commandId = randomUUID()): object {
  const base = { version: 1, commandId, vmId, issuedAt: new Date().toISOString() };
  if (n === 0) return { ...base, type: "vm.prepare", spec: SPEC };
  return { ...base, type: n % 2 === 1 ? "vm.start" : "vm.stop" };
}

/**
 * `perVm` commands for each of `vms` VMs on `host`, round-robin over the VMs (step-major) so
 * every VM's commands interleave with all the others' in the stream.
 */
export function planCommands(
  names: Names,
  host: string,
  vms: number,
  perVm: number,
  vmPrefix = "vm",
): PlannedCommand[] {
  const out: PlannedCommand[] = [];
  for (let step = 0; step < perVm; step++) {
    for (let i = 0; i < vms; i++) {
      const vmId = `${vmPrefix}-${i}`;
      const commandId = randomUUID();
      out.push({
        subject: names.cmd(host, vmId),
        vmId,
        commandId,
        data: encoder.encode(JSON.stringify(commandBody(vmId, step, commandId))),
      });
    }
  }
  return out;
}

/** Publishes with JetStream (PubAck awaited), keeping `window` publishes in flight, in order. */
export async function publishAll(
  js: JetStreamClient,
  items: readonly { subject: string; data: Uint8Array; msgID?: string }[],
  window = 512,
): Promise<void> {
  let next = 0;
  const lane = async (): Promise<void> => {
    for (let i = next++; i < items.length; i = next++) {
      const it = items[i];
      if (!it) continue;
      await js.publish(it.subject, it.data, it.msgID ? { msgID: it.msgID } : {});
    }
  };
  await Promise.all(Array.from({ length: Math.min(window, items.length) }, lane));
}

export const publishCommands = (
  js: JetStreamClient,
  cmds: readonly PlannedCommand[],
): Promise<void> =>
  publishAll(
    js,
    cmds.map((c) => ({ subject: c.subject, data: c.data, msgID: c.commandId })),
  );

export { namesFor, type Names };

/**
 * Deletes a measurement's streams (and KV buckets) once it is done: a server keeping every
 * earlier run's messages does more background work in each later one, which skews runs late in
 * the benchmark against runs early in it.
 */
export async function dropStreams(nc: NatsConnection, names: Names): Promise<void> {
  const jsm = await jetstreamManager(nc);
  const P = names.prefix.toUpperCase();
  for await (const s of jsm.streams.names())
    if (s.includes(P) || s.includes(names.prefix)) await jsm.streams.delete(s);
}

/** Resolves when `cond()` holds (polled every `everyMs`), rejects after `timeoutMs`. */
export async function waitFor(
  cond: () => boolean,
  timeoutMs: number,
  what: string,
  everyMs = 2,
): Promise<void> {
  const end = performance.now() + timeoutMs;
  while (!cond()) {
    if (performance.now() > end)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Counts the outcome events (anything but vm.command-accepted) published under `filter`. */
export function countOutcomes(
  nc: NatsConnection,
  filter: string,
  onOutcome?: (e: { causationId?: string; type?: string }) => void,
): { count: () => number; stop: () => void } {
  let n = 0;
  const decoder = new TextDecoder();
  const sub = nc.subscribe(filter, {
    callback: (_err, m) => {
      const e = JSON.parse(decoder.decode(m.data)) as { type?: string; causationId?: string };
      if (e.type === "vm.command-accepted" || e.type === "accepted") return;
      n++;
      onOutcome?.(e);
    },
  });
  return { count: () => n, stop: () => sub.unsubscribe() };
}
