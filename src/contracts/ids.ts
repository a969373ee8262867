import { z } from "zod";

/**
 * Identifier rules of the wire contract, enforced here once.
 * host and vmId are NATS subject tokens and path segments: 1-64 of [A-Za-z0-9_-],
 * not starting with `_` or `-`, so dots, spaces, `*`, `>`, `/` and `..` can never appear.
 */
export const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;

const idSchema = (what: string) =>
  z
    .string({ error: `${what} must be a string` })
    .regex(
      ID_PATTERN,
      `${what} must be 1-64 characters of A-Z a-z 0-9 _ -, not starting with _ or -`,
    );

export const HostId = idSchema("host").describe("The worker's host id (a subject token).");
export const VmId = idSchema("vmId").describe("The VM's id, unique across the fleet.");

/** 1-128 printable ASCII characters; it doubles as the Nats-Msg-Id header. */
export const CommandId = z
  .string({ error: "commandId must be a string" })
  .regex(/^[\x20-\x7e]{1,128}$/, {
    message: "commandId must be 1-128 printable ASCII characters",
  })
  .describe("Unique per command; the idempotency key for ever.");

/** The NATS prefix that isolates tenants and test runs: `acme` gives acme.*, ACME_*, acme-*. */
export const Prefix = z
  .string()
  .regex(
    /^[a-z][a-z0-9]{0,31}$/,
    "prefix must be 1-32 lower-case letters or digits, starting with a letter",
  );

export type HostId = z.infer<typeof HostId>;
export type VmId = z.infer<typeof VmId>;
export type CommandId = z.infer<typeof CommandId>;

export const isValidId = (s: unknown): s is string => typeof s === "string" && ID_PATTERN.test(s);
