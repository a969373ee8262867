/**
 * A cold move of one VM to another live host (`vmq move`, docs/operations.md "Moving a VM"):
 * a saga run here, its progress in the VM's record of `<prefix>-moves` so a rerun resumes it.
 * stop (if it ran) -> export the disk -> record it as an image -> prepare on the target from
 * it -> start there (if it ran) -> destroy on the source. Until the target runs the VM a failure
 * puts everything back (the source as it was, no copy on the target); from then on it only goes
 * forward. Every command carries the move's id as its correlation id and a deterministic
 * commandId, so a step published again is a duplicate whose outcome is already recorded.
 */
import { randomBytes } from "node:crypto";
import type { NatsConnection } from "@nats-io/transport-node";
import {
  FINAL_MOVE_STEPS,
  moveCommandId,
  parseImageRef,
  type CommandOrigin,
  type HostRecord,
  type MoveRecord,
  type Names,
  type VmView,
  type VmEvent,
  type VmSpec,
  type VmState,
} from "../contracts/index.js";
import { moveImageName } from "../domain/index.js";
import { isVmqError, VmqError } from "../lib/errors.js";
import type { CommandBody } from "./client-types.js";
import { ImageStore } from "./images/image-store.js";
import { preparedSpec } from "./prepared-spec.js";
import {
  MoveLog,
  moveRunBy,
  openMoves,
  recordExportedImage,
  sweepExportChunks,
} from "./move-record.js";

/** What a move needs of the client (VmqClient has it; kept structural so it imports no client). */
export interface MoveClient {
  readonly nc: NatsConnection;
  readonly names: Names;
  get(vmId: string): Promise<VmView | undefined>;
  hosts(): Promise<HostRecord[]>;
  history(host: string, vmId: string): Promise<{ event: VmEvent; seq: number }[]>;
  publish(host: string, body: CommandBody): Promise<unknown>;
  waitForOutcome(
    host: string,
    vmId: string,
    commandId: string,
    opts: { timeoutMs: number },
  ): Promise<{ outcome: VmEvent }>;
}

export interface MoveOptions {
  /** The host to move the VM to (a live worker with the VM's backend). */
  to: string;
  /** How long to wait for each step's outcome (default 10 min; an export of many GiB may need more). */
  timeoutMs?: number;
  /** The graceful window of the stop on the source (default the stop's 30 s, then escalation). */
  stopTimeoutMs?: number;
  /** Undo a move that has not reached the target's start (instead of going on with it). */
  abort?: boolean;
  /** Told after every step is recorded, before the next begins (the CLI prints them). */
  onProgress?: (move: MoveRecord) => void | Promise<void>;
}

const RAN: ReadonlySet<VmState> = new Set(["running", "suspended"]);
const MOVABLE: ReadonlySet<VmState> = new Set(["running", "suspended", "stopped", "prepared"]);
/** Steps at which the target's prepare may have been published: compensation looks there. */
const TARGET_TOUCHED: ReadonlySet<MoveRecord["step"]> = new Set(["registered", "prepared"]);

/** Moves `vmId` to `opts.to`, or takes up the move of it already under way; returns its record. */
export async function move(
  client: MoveClient,
  vmId: string,
  opts: MoveOptions,
): Promise<MoveRecord> {
  const kv = await openMoves(client.nc, client.names);
  const stored = await MoveLog.read(kv, vmId);
  let log: MoveLog;
  if (stored?.record && !FINAL_MOVE_STEPS.has(stored.record.step)) {
    if (stored.record.to !== opts.to)
      throw new VmqError(
        "move::in-progress",
        `VM ${vmId} is being moved from ${stored.record.from} to ${stored.record.to} (move ${stored.record.id}, step ${stored.record.step})`,
        {
          hint: `Run vmq move ${vmId} --to ${stored.record.to} to take it up (--abort to undo it).`,
        },
      );
    log = MoveLog.resume(kv, stored.record, stored.revision, opts.onProgress);
  } else {
    if (opts.abort)
      throw new VmqError("move::not-movable", `VM ${vmId} has no move under way to abort`);
    log = await MoveLog.begin(
      kv,
      await plan(client, vmId, opts.to),
      stored?.revision,
      opts.onProgress,
    );
  }
  return new MoveSaga(client, log, opts).run();
}

/** Checks the move can begin and says what it is: from where, to where, what the VM was. */
async function plan(client: MoveClient, vmId: string, to: string): Promise<MoveRecord> {
  const view = await client.get(vmId);
  if (!view || view.state === "destroyed")
    throw new VmqError("client::vm-unknown", `VM ${vmId} is not in the view`);
  if (view.host === to)
    throw new VmqError("move::same-host", `VM ${vmId} already lives on host ${to}`);
  if (!MOVABLE.has(view.state) || view.pending)
    throw new VmqError(
      "move::not-movable",
      `VM ${vmId} is ${view.state}${view.pending ? ` with ${view.pending.type} pending` : ""}; only a running, stopped or prepared VM with nothing pending moves`,
    );
  const backend = view.handle?.backend;
  if (backend === "propolis")
    throw new VmqError(
      "move::not-movable",
      `VM ${vmId} runs on propolis, which cannot export a disk (docs/propolis.md)`,
    );
  const target = (await client.hosts()).find((h) => h.host === to);
  if (!target || (backend && !target.backends.includes(backend)))
    throw new VmqError(
      "move::target-unavailable",
      target
        ? `host ${to} has no ${backend} backend (it has ${target.backends.join(", ")})`
        : `host ${to} has no live worker (no heartbeat in ${client.names.hostsBucket})`,
    );
  const now = new Date().toISOString();
  return {
    id: randomBytes(8).toString("hex"),
    vmId,
    from: view.host,
    to,
    was: view.state,
    step: "planned",
    at: now,
    by: moveRunBy(),
    updatedAt: now,
  };
}

class MoveSaga {
  readonly #origin: CommandOrigin;
  readonly #timeoutMs: number;

  constructor(
    private readonly client: MoveClient,
    private readonly log: MoveLog,
    private readonly opts: MoveOptions,
  ) {
    const r = log.record;
    this.#origin = { kind: "move", fromHost: r.from, toHost: r.to, moveId: r.id };
    this.#timeoutMs = opts.timeoutMs ?? 600_000;
  }

  get #r(): MoveRecord {
    return this.log.record;
  }

  async run(): Promise<MoveRecord> {
    if (this.opts.abort && this.#r.step === "started")
      throw new VmqError(
        "move::in-progress",
        `move ${this.#r.id}: VM ${this.#r.vmId} runs on ${this.#r.to} already; it can only be finished`,
        { hint: `Run vmq move ${this.#r.vmId} --to ${this.#r.to} without --abort.` },
      );
    if (this.opts.abort && this.#r.step !== "compensating")
      await this.log.set({ step: "compensating", error: "aborted by the operator (--abort)" });
    if (this.#r.step === "compensating") return this.#compensate();
    try {
      await this.#forward();
    } catch (e) {
      const err = isVmqError(e) ? e : new VmqError("internal::unexpected", String(e));
      // An outcome not seen (a worker down, NATS away), a record someone else changed, or a
      // failure once the target runs the VM: the move stays where it got to, for a rerun.
      if (!(err instanceof StepFailed) || this.#r.step === "started") throw err;
      await this.log.set({ step: "compensating", error: err.message });
      return this.#compensate();
    }
    return this.#r;
  }

  async #forward(): Promise<void> {
    const { vmId, from, to } = this.#r;
    if (this.#r.step === "planned") {
      if (RAN.has(this.#r.was)) {
        const stop = {
          type: "vm.stop" as const,
          vmId,
          ...(this.opts.stopTimeoutMs === undefined ? {} : { timeoutMs: this.opts.stopTimeoutMs }),
        };
        const out = await this.#step(from, "stop", stop);
        // Stopped in between by someone else (or the guest): what counts is that it is off.
        if (out.type !== "vm.stopped" && (await this.#stateOn(from)) !== "stopped")
          throw failedStep("stop", from, out);
      }
      await this.log.set({ step: "stopped" });
    }
    if (this.#r.step === "stopped") {
      const out = await this.#step(from, "export", { type: "vm.export-disk", vmId });
      if (out.type !== "vm.disk-exported") throw failedStep("export", from, out);
      await this.log.set({ step: "exported", disk: out.disk });
    }
    if (this.#r.step === "exported") {
      const disk = this.#r.disk!;
      const object = await recordExportedImage(
        this.client.nc,
        this.client.names,
        moveImageName(vmId),
        disk,
      );
      await this.#images().tag(object, this.#r.id);
      await sweepExportChunks(
        this.client.nc,
        this.client.names,
        moveCommandId(this.#r.id, "export"),
        disk.nuid,
      );
      await this.log.set({ step: "registered", image: object });
    }
    if (this.#r.step === "registered") {
      const spec = await this.#spec();
      const out = await this.#step(to, "prepare", { type: "vm.prepare", vmId, spec });
      if (out.type !== "vm.prepared") throw failedStep("prepare", to, out);
      await this.log.set({ step: "prepared" });
    }
    if (this.#r.step === "prepared") {
      if (RAN.has(this.#r.was)) {
        const out = await this.#step(to, "start", { type: "vm.start", vmId });
        if (out.type !== "vm.started") throw failedStep("start", to, out);
      }
      await this.log.set({ step: "started" });
    }
    if (this.#r.step === "started") {
      // The target has the VM: the source's copy goes, whatever it takes (no compensation).
      const out = await this.#step(from, "destroy", { type: "vm.destroy", vmId });
      if (out.type !== "vm.destroyed")
        throw new VmqError(
          "move::step-failed",
          `VM ${vmId} runs on ${to}, but its copy on ${from} was not destroyed (${describe(out)}); run vmq move again`,
        );
      // The new image stays: it is the VM's base on the target now, what an evacuation of the
      // target re-creates it from. The export an earlier move left for the source's copy goes.
      await this.#dropEarlierExport();
      await this.log.set({ step: "done", completedAt: new Date().toISOString() });
    }
  }

  /**
   * Puts the VM back as it was: the target's copy destroyed first (so two never run), the
   * source started again when it ran, the image removed. A step not seen stays for a rerun.
   */
  async #compensate(): Promise<MoveRecord> {
    const { vmId, from, to } = this.#r;
    if (TARGET_TOUCHED.has(this.#r.step)) {
      // Its prepare may be queued still: its outcome decides. Published again it is a duplicate
      // (or, if this process died before publishing it, it runs now and is undone below); a
      // prepare the target refused created nothing, and nothing there is destroyed.
      const spec = await this.#spec();
      const prepared = await this.#step(to, "prepare", { type: "vm.prepare", vmId, spec });
      if (prepared.type !== "vm.command-rejected") {
        const out = await this.#step(to, "undo-destroy", { type: "vm.destroy", vmId });
        if (out.type !== "vm.destroyed")
          throw new VmqError(
            "move::step-failed",
            `undoing move ${this.#r.id}: the copy on ${to} could not be destroyed (${describe(out)}); run vmq move again`,
          );
      }
    }
    if (RAN.has(this.#r.was)) {
      const out = await this.#step(from, "undo-start", { type: "vm.start", vmId });
      // Already running (its stop never happened) is as it was.
      if (out.type !== "vm.started" && (await this.#stateOn(from)) !== "running")
        throw new VmqError(
          "move::step-failed",
          `undoing move ${this.#r.id}: VM ${vmId} could not be started again on ${from} (${describe(out)})`,
        );
    }
    // An export of unchanged bytes is the image the source's copy runs from: that one stays.
    if (this.#r.image !== (await this.#sourceSpec())?.image) await this.#dropImage();
    await sweepExportChunks(this.client.nc, this.client.names, moveCommandId(this.#r.id, "export"));
    const done = await this.log.set({ step: "failed", completedAt: new Date().toISOString() });
    throw new VmqError(
      "move::step-failed",
      `move ${done.id} of VM ${vmId} from ${from} to ${to} was undone: ${done.error ?? "(no reason recorded)"}`,
    );
  }

  /** Publishes one step's command (again, on a rerun: a duplicate) and waits for its outcome. */
  async #step(
    host: string,
    step: Parameters<typeof moveCommandId>[1],
    body: CommandBody,
  ): Promise<VmEvent> {
    const commandId = moveCommandId(this.#r.id, step);
    const full = { ...body, commandId, correlationId: this.#r.id, origin: this.#origin };
    await this.client.publish(host, full);
    const r = await this.client.waitForOutcome(host, this.#r.vmId, commandId, {
      timeoutMs: this.#timeoutMs,
    });
    return r.outcome;
  }

  /** The state the VM's last event on `host` recorded. */
  async #stateOn(host: string): Promise<VmState | undefined> {
    const history = await this.client.history(host, this.#r.vmId);
    return history.filter((e) => e.event.type !== "vm.command-rejected").at(-1)?.event.state;
  }

  /** The spec the source prepared the VM from, as its events recorded it. */
  async #sourceSpec(): Promise<VmSpec | undefined> {
    return preparedSpec(await this.client.history(this.#r.from, this.#r.vmId)).spec;
  }

  /** The spec the source prepared it from, with the exported image as its base. */
  async #spec(): Promise<VmSpec> {
    const spec = await this.#sourceSpec();
    if (!spec)
      throw new VmqError(
        "vm::not-found",
        `VM ${this.#r.vmId} has no recorded spec in ${this.#r.from}'s events`,
      );
    const { imagePath: _path, image: _image, cloudInit, ...rest } = spec;
    const moved = { ...rest, image: this.#r.image! };
    if (!cloudInit) return moved;
    // The guest ran its user-data on the source; the disk moves with what it did. The seed
    // keeps the instance id (cloud-init then knows the instance) and no user-data, which was
    // sealed to the source's key or kept only as a digest.
    const {
      userData: _u,
      sealedUserData: _s,
      userDataDigest: _d,
      userDataBytes: _b,
      ...keep
    } = cloudInit;
    return { ...moved, cloudInit: { ...keep, userData: "" } };
  }

  #images(): ImageStore {
    return new ImageStore(this.client.nc, { prefix: this.client.names.prefix });
  }

  async #dropImage(image = this.#r.image): Promise<void> {
    if (!image) return;
    await this.#images()
      .remove(image)
      .catch((e: unknown) => {
        if (!isVmqError(e, "image::not-found")) throw e;
      });
  }

  /** The source's copy ran from an earlier move's export: nothing uses it now. */
  async #dropEarlierExport(): Promise<void> {
    const earlier = (await this.#sourceSpec())?.image;
    const name = earlier ? parseImageRef(earlier)?.name : undefined;
    if (earlier !== this.#r.image && name === moveImageName(this.#r.vmId))
      await this.#dropImage(earlier);
  }
}

/** A step whose command had an outcome other than the one the move needs. */
class StepFailed extends VmqError {}

function failedStep(step: string, host: string, out: VmEvent): StepFailed {
  return new StepFailed("move::step-failed", `${step} on ${host}: ${describe(out)}`);
}

function describe(out: VmEvent): string {
  return "code" in out ? `${out.type} ${out.code}: ${out.message}` : out.type;
}
