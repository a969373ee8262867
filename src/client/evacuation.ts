import { createHash, randomUUID } from "node:crypto";
import { hostname, userInfo } from "node:os";
import { JetStreamApiError } from "@nats-io/jetstream";
import { Kvm, type KV, type KvEntry } from "@nats-io/kv";
import {
  EVACUATION_HOLDER_PREFIX,
  HostLease,
  parseImageRef,
  type EvacuatedVm,
  type Evacuation,
  type VmSpec,
  type VmState,
} from "../contracts/index.js";
import { VmqError } from "../lib/errors.js";
import { preparedSpec } from "./prepared-spec.js";
import type { VmqClient } from "./vm-client.js";

export interface EvacuateOptions {
  /** How long to watch the host's lease stand still before refusing (default: its TTL + 30%). */
  waitMs?: number;
  /** A host with no lease record whose heartbeat has not expired: evacuate it all the same. */
  iKnowItIsDead?: boolean;
  /** How long to wait for each command's outcome on the target (default 120 s). */
  timeoutMs?: number;
  /** Told after every step of every VM (the CLI prints them). */
  onProgress?: (vm: EvacuatedVm, what: string) => void;
}

const FINAL = new Set(["done", "skipped", "failed"]);
const BASE_IMAGE_LOST =
  "disk state: re-created from its base image (no disk is exported or moved; anything written inside the guest on the dead host is not there)";

const isConflict = (e: unknown): boolean => e instanceof JetStreamApiError && e.code === 10071;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The commandIds of an evacuation: the same on every rerun, so a re-publish is a duplicate. */
export const evacuationCommandId = (id: string, vmId: string, step: "prepare" | "start"): string =>
  `evac-${id}-${createHash("sha256").update(vmId).digest("hex").slice(0, 16)}-${step}`;

/**
 * Evacuates a dead host (docs/operations.md, "A host died"): refuses a live one, fences it by
 * taking its lease with an evacuation record, then re-creates each of its VMs on another host
 * by placement with the same vmId, recording per-VM progress in that record so a rerun resumes.
 * Returns the evacuation as it ends.
 */
export async function evacuate(
  client: VmqClient,
  host: string,
  opts: EvacuateOptions = {},
): Promise<Evacuation> {
  const kv = await new Kvm(client.js).open(client.names.leasesBucket);
  const evacuation = (await resumable(kv, host)) ?? (await fence(client, kv, host, opts));
  const progress = new Progress(kv, host, evacuation, opts.onProgress);
  for (const entry of evacuation.vms) {
    if (FINAL.has(entry.step)) continue;
    await moveOne(client, host, progress, entry.vmId, opts).catch(async (e: unknown) => {
      const err = e instanceof VmqError ? e : new VmqError("internal::unexpected", String(e));
      if (err.code === "evacuation::conflict") throw err;
      // A VM whose outcome we did not see stays where it got to: a rerun goes on from there.
      if (err.code === "client::not-accepted" || err.code === "client::outcome-timeout") throw err;
      await progress.set(entry.vmId, { step: "failed", error: `${err.code}: ${err.message}` });
    });
  }
  return progress.complete();
}

/** An evacuation of this host already under way (or done): a rerun takes it up. */
async function resumable(kv: KV, host: string): Promise<Evacuation | undefined> {
  const entry = await kv.get(host);
  if (entry?.operation !== "PUT") return undefined;
  const rec = HostLease.safeParse(entry.json());
  return rec.success && rec.data.holder.startsWith(EVACUATION_HOLDER_PREFIX)
    ? rec.data.evacuation
    : undefined;
}

/** Makes sure the host is dead, then takes its lease with an evacuation record (CAS). */
async function fence(
  client: VmqClient,
  kv: KV,
  host: string,
  opts: EvacuateOptions,
): Promise<Evacuation> {
  const { revision, ttlMs } = await observeDead(client, kv, host, opts);
  const id = randomUUID().replaceAll("-", "").slice(0, 16);
  const vms = await liveVmsOf(client, host);
  const now = new Date().toISOString();
  const evacuation: Evacuation = {
    id,
    at: now,
    by: `${userInfo().username}@${hostname()} pid ${process.pid}`,
    vms: vms.map((v) => ({ vmId: v.vmId, was: v.state, step: "listed", lost: [] })),
  };
  const body = JSON.stringify(
    HostLease.parse({
      host,
      holder: `${EVACUATION_HOLDER_PREFIX}${id}`,
      token: revision,
      ttlMs,
      acquiredAt: now,
      renewedAt: now,
      evacuation,
    }),
  );
  try {
    if (revision === 0) await kv.create(host, body);
    else await kv.update(host, body, revision);
  } catch (e) {
    if (!isConflict(e)) throw e;
    throw new VmqError(
      "host::alive",
      `the lease of host ${host} changed while it was being fenced: its worker is alive`,
    );
  }
  return evacuation;
}

/**
 * Like a standby: the same lease revision must stand for a whole TTL on this process's clock.
 * With no lease record, the host's heartbeat must have expired (or the operator says so).
 */
async function observeDead(
  client: VmqClient,
  kv: KV,
  host: string,
  opts: EvacuateOptions,
): Promise<{ revision: number; ttlMs: number }> {
  const first = await kv.get(host);
  if (first?.operation !== "PUT") {
    const beating = (await client.hosts()).some((h) => h.host === host);
    if (beating && !opts.iKnowItIsDead)
      throw new VmqError(
        "host::alive",
        `host ${host} has no lease record and its heartbeat has not expired`,
      );
    // A name this fleet never saw is a typo, not a dead host: fencing it would report an
    // evacuation "complete" that evacuated nothing.
    if (!first && !beating && (await eventSubjects(client, host)).length === 0)
      throw new VmqError(
        "host::unknown",
        `host ${host} is unknown here: it has no lease record, no heartbeat and no events`,
      );
    return { revision: first?.revision ?? 0, ttlMs: 10_000 };
  }
  const ttlMs = ttlOf(first);
  const waitMs = opts.waitMs ?? Math.ceil(ttlMs * 1.3);
  const since = performance.now();
  for (;;) {
    const now = await kv.get(host);
    if (now?.revision !== first.revision)
      throw new VmqError(
        "host::alive",
        `the lease of host ${host} was renewed (revision ${first.revision} -> ${now?.revision ?? "gone"}): its worker is alive`,
      );
    const stood = performance.now() - since;
    if (stood >= ttlMs) return { revision: first.revision, ttlMs };
    if (stood >= waitMs)
      throw new VmqError(
        "host::alive",
        `the lease of host ${host} has not stood for its TTL (${ttlMs} ms) within --wait ${waitMs} ms`,
      );
    await sleep(Math.min(ttlMs / 5, Math.max(10, waitMs - stood)));
  }
}

const ttlOf = (e: KvEntry): number => {
  const rec = HostLease.safeParse(e.json());
  return rec.success ? rec.data.ttlMs : 10_000;
};

/** The subjects of the host's VMs in the events stream (one per VM with events). */
async function eventSubjects(client: VmqClient, host: string): Promise<string[]> {
  const jsm = await client.js.jetstreamManager();
  const filter = client.names.evt(host, "*");
  const info = await jsm.streams.info(client.names.eventsStream, { subjects_filter: filter });
  return Object.keys(info.state.subjects ?? {});
}

/**
 * The host's VMs that are not destroyed, from its events (the truth: its view records may lag
 * behind a worker that died), each with the state its last event recorded.
 */
async function liveVmsOf(
  client: VmqClient,
  host: string,
): Promise<{ vmId: string; state: VmState }[]> {
  const out: { vmId: string; state: VmState }[] = [];
  for (const subject of await eventSubjects(client, host)) {
    const vmId = subject.slice(subject.lastIndexOf(".") + 1);
    const history = await client.history(host, vmId);
    const last = history.filter((e) => e.event.type !== "vm.command-rejected").at(-1)?.event;
    if (last && last.state !== "destroyed") out.push({ vmId, state: last.state });
  }
  return out.sort((a, b) => a.vmId.localeCompare(b.vmId));
}

/** One VM: place it (once), drop the dead host's view record, prepare it there, start it. */
async function moveOne(
  client: VmqClient,
  host: string,
  progress: Progress,
  vmId: string,
  opts: EvacuateOptions,
): Promise<void> {
  const id = progress.evacuation.id;
  let entry = progress.get(vmId);
  const { spec, lost } = await recordedSpec(client, host, vmId);
  if (entry.step === "listed") {
    const elsewhere = await client.get(vmId);
    if (elsewhere && elsewhere.host !== host && elsewhere.state !== "destroyed") {
      await progress.set(vmId, { step: "skipped", target: elsewhere.host, lost: [] });
      return;
    }
    const p = await client.placer.place({
      ...(spec.backend ? { backend: spec.backend } : {}),
      exclude: [host],
    });
    if (!p)
      throw new VmqError(
        "evacuation::no-target",
        `no live host other than ${host} can take VM ${vmId}`,
      );
    entry = await progress.set(vmId, { step: "placed", target: p.host, lost });
  }
  const target = entry.target as string;
  const origin = { kind: "evacuation" as const, fromHost: host, evacuationId: id };
  const timeoutMs = opts.timeoutMs ?? 120_000;
  if (entry.step === "placed") {
    // The dead host's record would make the target refuse the vmId (vm::exists) and clients
    // resolve it to the dead host: it goes first (the target writes its own once prepared).
    await dropViewRecord(client, host, vmId);
    const commandId = evacuationCommandId(id, vmId, "prepare");
    await client.publish(target, { type: "vm.prepare", vmId, spec, commandId, origin });
    const r = await client.waitForOutcome(target, vmId, commandId, { timeoutMs });
    if (r.outcome.type !== "vm.prepared") throw outcomeError(r.outcome, target);
    entry = await progress.set(vmId, { step: "prepared" });
  }
  if (entry.step === "prepared") {
    if (entry.was === "running") {
      const commandId = evacuationCommandId(id, vmId, "start");
      await client.publish(target, { type: "vm.start", vmId, commandId, origin });
      const r = await client.waitForOutcome(target, vmId, commandId, { timeoutMs });
      if (r.outcome.type !== "vm.started") throw outcomeError(r.outcome, target);
    }
    await progress.set(vmId, { step: "done" });
  }
}

function outcomeError(outcome: { type: string; code?: string; message?: string }, target: string) {
  return new VmqError(
    "evacuation::conflict",
    `${target}: ${outcome.type}${"code" in outcome ? ` ${outcome.code}: ${outcome.message}` : ""}`,
  );
}

async function dropViewRecord(client: VmqClient, host: string, vmId: string): Promise<void> {
  const kv = await new Kvm(client.js).open(client.names.vmsBucket);
  const key = client.names.viewKey(host, vmId);
  if ((await kv.get(key))?.operation === "PUT") await kv.purge(key);
}

/** The spec the VM was prepared from (its history), less what cannot move; and what was lost. */
async function recordedSpec(
  client: VmqClient,
  host: string,
  vmId: string,
): Promise<{ spec: VmSpec; lost: string[] }> {
  const recorded = preparedSpec(await client.history(host, vmId));
  let spec = recorded.spec;
  const digest = recorded.imageDigest;
  if (!spec)
    throw new VmqError("vm::not-found", `VM ${vmId} has no recorded spec in ${host}'s events`);
  // The bytes it was prepared from, not what its tag names now (moved on, or removed).
  const ref = spec.image ? parseImageRef(spec.image) : undefined;
  if (ref && digest) spec = { ...spec, image: `${ref.name}@${digest}` };
  // A VM that came by a move runs from the disk that move exported: the last export there is.
  const fromMove = spec.image && parseImageRef(spec.image)?.name.startsWith("move-");
  const lost = [
    fromMove
      ? `disk state: re-created from the disk its last move exported (${spec.image}); anything written inside the guest since that move is not there`
      : BASE_IMAGE_LOST,
  ];
  const { cloudInit, ...rest } = spec;
  if (!cloudInit) return { spec: rest, lost };
  const { userData: _u, sealedUserData, userDataDigest, userDataBytes: _b, ...keep } = cloudInit;
  if (sealedUserData || userDataDigest)
    lost.push(
      "user-data: sealed to the dead host's key (or kept only as a digest); it cannot be re-sealed, so the VM boots without it",
    );
  return { spec: { ...rest, cloudInit: keep }, lost };
}

/** The evacuation record, rewritten by compare-and-set on the host's lease after every step. */
class Progress {
  constructor(
    private readonly kv: KV,
    private readonly host: string,
    public evacuation: Evacuation,
    private readonly told?: (vm: EvacuatedVm, what: string) => void,
  ) {}

  get(vmId: string): EvacuatedVm {
    const e = this.evacuation.vms.find((v) => v.vmId === vmId);
    if (!e) throw new VmqError("internal::unexpected", `VM ${vmId} is not in the evacuation`);
    return e;
  }

  async set(vmId: string, change: Partial<EvacuatedVm>): Promise<EvacuatedVm> {
    await this.#mutate((ev) => ({
      ...ev,
      vms: ev.vms.map((v) => (v.vmId === vmId ? { ...v, ...change } : v)),
    }));
    const e = this.get(vmId);
    this.told?.(e, e.step);
    return e;
  }

  async complete(): Promise<Evacuation> {
    if (this.evacuation.completedAt || !this.evacuation.vms.every((v) => FINAL.has(v.step)))
      return this.evacuation;
    await this.#mutate((ev) => ({ ...ev, completedAt: new Date().toISOString() }));
    return this.evacuation;
  }

  async #mutate(change: (ev: Evacuation) => Evacuation): Promise<void> {
    for (let i = 0; i < 10; i++) {
      const entry = await this.kv.get(this.host);
      const rec = entry?.operation === "PUT" ? HostLease.safeParse(entry.json()) : undefined;
      if (!entry || !rec?.success || rec.data.evacuation?.id !== this.evacuation.id)
        throw new VmqError(
          "evacuation::conflict",
          `the lease of host ${this.host} no longer holds evacuation ${this.evacuation.id}`,
        );
      const next = change(rec.data.evacuation);
      const body = { ...rec.data, renewedAt: new Date().toISOString(), evacuation: next };
      try {
        await this.kv.update(this.host, JSON.stringify(HostLease.parse(body)), entry.revision);
        this.evacuation = next;
        return;
      } catch (e) {
        if (!isConflict(e)) throw e;
      }
    }
    throw new VmqError("evacuation::conflict", `the lease of host ${this.host} keeps changing`);
  }
}
