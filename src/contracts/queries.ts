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
export const GuestIpReply = z.object({ ok: z.literal(true), ip: z.string() });
export const ConsoleReply = z.object({ ok: z.literal(true), console: ConsoleEndpoint });

export const QUERY_REPLY_SCHEMAS = {
  get: z.union([GetReply, QueryError]),
  state: z.union([StateReply, QueryError]),
  "guest-ip": z.union([GuestIpReply, QueryError]),
  console: z.union([ConsoleReply, QueryError]),
} as const;
export type QueryReply<Q extends QueryName> = z.infer<(typeof QUERY_REPLY_SCHEMAS)[Q]>;
