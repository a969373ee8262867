/**
 * The narrow ports the worker's parts are given instead of one context with everything: each
 * part names what it uses, and a unit test hands it an in-memory or fake implementation.
 */
import type { MsgHdrs } from "@nats-io/transport-node";
import type { VmTombstone } from "../contracts/index.js";

export interface Clock {
  now(): Date;
}

export interface Ids {
  /** A fresh unique id (observation eventIds). */
  newId(): string;
}

/** What goes into the DLQ with a command that could not be handled. */
export interface DeadLetter {
  subject: string;
  data: Uint8Array;
  headers?: MsgHdrs | undefined;
  streamSeq: number;
  code: string;
  reason: string;
  attempts: number;
  lastError?: string;
  vmState?: string;
}

export interface DeadLetters {
  /** Copies the command to the DLQ; at most one copy per command message, however often called. */
  put(d: DeadLetter): Promise<void>;
}

/** The fleet-wide `vmq-vms` view as the pipeline needs it. */
export interface FleetView {
  /** The other live host that holds this vmId, if any (advisory: undefined when unsure). */
  ownerElsewhere(vmId: string): Promise<string | undefined>;
  /** Writes the VM's record again (a write may have been lost while NATS was away). */
  refresh(vmId: string): void;
}

/** The `<prefix>-moves` records as the pipeline needs them. */
export interface MoveChecks {
  /** Whether move `moveId` of the VM is still under way (its record is there and not final). */
  underWay(vmId: string, moveId: string): Promise<boolean>;
}

export const systemClock: Clock = { now: () => new Date() };

/** What is left of this host's compacted VMs (the `<prefix>-tombstones` bucket). */
export interface Tombstones {
  get(vmId: string): Promise<VmTombstone | undefined>;
  put(t: VmTombstone): Promise<void>;
}
