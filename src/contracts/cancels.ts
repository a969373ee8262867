import { z } from "zod";
import { CommandId, HostId, VmId } from "./ids.js";

/**
 * A request to cancel a queued command, in the `<prefix>-cancels` bucket under
 * `<host>.<hex of the commandId>` (a commandId may hold characters a key may not). The worker
 * of that host rejects the command with `command::cancelled` if it has not accepted it yet.
 */
export const CancelRecord = z.object({
  version: z.literal(1),
  commandId: CommandId,
  host: HostId,
  vmId: VmId,
  requestedAt: z.iso.datetime({ offset: true }),
});
export type CancelRecord = z.infer<typeof CancelRecord>;

/** How long a cancel is kept (the bucket's TTL): as long as the commands stream keeps a command. */
export const CANCEL_TTL_MS = 7 * 24 * 3_600_000;

const hex = (s: string): string =>
  Array.from(s, (c) => c.charCodeAt(0).toString(16).padStart(2, "0")).join("");

/** The key of a command's cancel: the host, then the commandId in hex (printable ASCII). */
export const cancelKey = (host: string, commandId: string): string => `${host}.${hex(commandId)}`;
