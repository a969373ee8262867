import type { CommandInput, VmEvent } from "../contracts/index.js";

/** The SDK's option and result types (vm-client.ts re-exports them). */
export interface VmqClientOptions {
  prefix?: string;
  /** Default time to wait for an outcome. */
  timeoutMs?: number;
  /**
   * How long a read waits for a `vmq-vms` record that lags this client's own writes before it
   * folds the VM's events instead (default 250 ms; 0 folds at once).
   */
  viewWaitMs?: number;
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/** A command as a scheduler writes it: commandId, version and issuedAt are filled in. */
export type CommandBody = DistributiveOmit<CommandInput, "commandId" | "version" | "issuedAt"> & {
  commandId?: string;
  issuedAt?: string;
};

export interface SendResult {
  commandId: string;
  /** The host the command was published to. */
  host: string;
  /** The command's stream sequence in VMQ_COMMANDS. */
  seq: number;
  /** The first event caused by the command that is not vm.command-accepted. */
  outcome: VmEvent;
  /**
   * Its events-stream sequence: the VM's version after the command. The client remembers it,
   * and its reads of the VM (get, list, the host of start without one) reflect at least it.
   */
  outcomeSeq: number;
  accepted: boolean;
}

export interface WatchOptions {
  /** Start after this stream sequence, at this time, or only new events (default: all history). */
  afterSeq?: number;
  since?: Date;
  newOnly?: boolean;
  signal?: AbortSignal;
  /** Stop once the events stored when the watch reaches them are delivered (no following). */
  toEnd?: boolean;
  /**
   * An event this client cannot read (a newer vmq wrote it): called, and the watch goes on.
   * Without it the watch throws `client::unreadable-event`: nothing is skipped silently.
   */
  onUnreadable?: (info: { seq: number; subject: string; message: string }) => void;
}
