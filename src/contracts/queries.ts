import { z } from "zod";
import { ConsoleEndpoint, VmState, VmView } from "./vm.js";

export const QUERY_NAMES = ["get", "state", "guest-ip", "console"] as const;
export const QueryName = z.enum(QUERY_NAMES);
export type QueryName = z.infer<typeof QueryName>;

export const ErrorBody = z.object({
  code: z.string().describe("Stable area::reason code."),
  message: z.string(),
  hint: z.string().optional(),
});
export type ErrorBody = z.infer<typeof ErrorBody>;

export const QueryError = z.object({ ok: z.literal(false), error: ErrorBody });
export const GetReply = z.object({ ok: z.literal(true), vm: VmView });
export const StateReply = z.object({
  ok: z.literal(true),
  state: VmState.describe("As the backend reports it now."),
  recorded: VmState.describe("As the event stream has it."),
});
export const PortForward = z.object({
  protocol: z.enum(["tcp", "udp"]),
  hostAddr: z.string().describe("The host address the forward listens on."),
  hostPort: z.int().min(1).max(65535),
  guestPort: z.int().min(1).max(65535),
});
export type PortForward = z.infer<typeof PortForward>;

/** The guest's address and, when it is private to the VM (QEMU user networking), how to reach it. */
export const GuestAddress = z.object({
  ip: z.string().describe("The guest's own IPv4 address (only given once the guest has it)."),
  forwards: z
    .array(PortForward)
    .optional()
    .describe(
      "Host ports forwarded to the guest: with QEMU user networking the guest's ip is private to the VM and reached only through these.",
    ),
});
export type GuestAddress = z.infer<typeof GuestAddress>;

export const GuestIpReply = z.object({ ok: z.literal(true), ...GuestAddress.shape });
export const ConsoleReply = z.object({ ok: z.literal(true), console: ConsoleEndpoint });

export const QUERY_REPLY_SCHEMAS = {
  get: z.union([GetReply, QueryError]),
  state: z.union([StateReply, QueryError]),
  "guest-ip": z.union([GuestIpReply, QueryError]),
  console: z.union([ConsoleReply, QueryError]),
} as const;
export type QueryReply<Q extends QueryName> = z.infer<(typeof QUERY_REPLY_SCHEMAS)[Q]>;
