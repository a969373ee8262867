/**
 * cloud-init user-data sealed to one host (curve25519 xkeys of the nkeys library): the SDK and
 * the CLI seal it to the target host's public key with a one-off key pair of their own; only
 * that host's worker opens it, and only to build the VM's seed. Plaintext user-data (from an old
 * client) is replaced by its digest and size wherever a command is copied.
 */
import { createHash } from "node:crypto";
import { createCurve, type KeyPair } from "@nats-io/nkeys";
import type { CloudInit, Command, SealedUserData, VmSpec } from "../contracts/index.js";
import { VmqError } from "./errors.js";

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/** sha256 of the UTF-8 text, as the contract writes it. */
export const userDataDigest = (text: string): string =>
  `sha256:${createHash("sha256").update(text, "utf8").digest("hex")}`;

/** Seals `plaintext` to `recipient` (an X... public key) with a fresh sender key pair. */
export function sealUserData(plaintext: string, recipient: string): SealedUserData {
  const sender = createCurve();
  try {
    const sealed = sender.seal(encoder.encode(plaintext), recipient);
    return {
      alg: "xkv1",
      recipient,
      sender: sender.getPublicKey(),
      data: Buffer.from(sealed).toString("base64"),
    };
  } finally {
    sender.clear(); // one-off: nobody needs to open what it sealed
  }
}

/**
 * Opens sealed user-data with the host's key pair. A blob for another key is
 * `userdata::wrong-host`; one that does not open (tampered, a changed key) `userdata::unsealable`.
 */
export function openUserData(sealed: SealedUserData, host: KeyPair): string {
  const mine = host.getPublicKey();
  if (sealed.recipient !== mine) {
    throw new VmqError(
      "userdata::wrong-host",
      `user-data is sealed to ${sealed.recipient}, not to this host's key ${mine}`,
    );
  }
  let opened: Uint8Array | null = null;
  try {
    opened = host.open(Buffer.from(sealed.data, "base64"), sealed.sender);
  } catch {
    opened = null; // a malformed sender key or header: the same answer as a failed box
  }
  if (!opened) {
    throw new VmqError(
      "userdata::unsealable",
      "sealed user-data does not open with this host's key",
    );
  }
  try {
    return decoder.decode(opened);
  } catch {
    throw new VmqError("userdata::unsealable", "sealed user-data is not UTF-8 text");
  }
}

/**
 * The cloud-init section as events may carry it: plaintext replaced by its digest and size, and
 * `userData: ""` beside the sealed form or the digest, which readers of the previous v1 (they
 * required userData) still parse.
 */
export function withheldCloudInit(ci: CloudInit): CloudInit {
  if (ci.sealedUserData !== undefined || ci.userDataDigest !== undefined)
    return { ...ci, userData: "" };
  const { userData = "", ...rest } = ci;
  return {
    ...rest,
    userData: "",
    userDataDigest: userDataDigest(userData),
    userDataBytes: Buffer.byteLength(userData, "utf8"),
  };
}

/** The spec as it may be recorded: no plaintext user-data. */
export function withheldSpec(spec: VmSpec): VmSpec {
  const ci = spec.cloudInit;
  return ci === undefined ? spec : { ...spec, cloudInit: withheldCloudInit(ci) };
}

/** The command as it may be recorded: no plaintext user-data (sealed user-data stays sealed). */
export function recordable(command: Command): Command {
  if (command.type !== "vm.prepare" || command.spec.cloudInit === undefined) return command;
  return { ...command, spec: withheldSpec(command.spec) };
}

/**
 * A raw command body as a DLQ copy may hold it: when it is a JSON object whose
 * spec.cloudInit.userData is a string, that string is replaced by its digest and size; any other
 * body is returned as it is (`withheld: false`).
 */
export function withheldRaw(data: Uint8Array): { data: Uint8Array; withheld: boolean } {
  let body: unknown;
  try {
    body = JSON.parse(decoder.decode(data));
  } catch {
    return { data, withheld: false };
  }
  const ci = (body as { spec?: { cloudInit?: Record<string, unknown> } } | null)?.spec?.cloudInit;
  if (typeof ci !== "object" || ci === null || typeof ci.userData !== "string")
    return { data, withheld: false };
  const text = ci.userData;
  if (text === "" && (ci.sealedUserData !== undefined || ci.userDataDigest !== undefined))
    return { data, withheld: false }; // the placeholder events carry: nothing to withhold
  ci.userData = "";
  ci.userDataDigest = userDataDigest(text);
  ci.userDataBytes = Buffer.byteLength(text, "utf8");
  return { data: encoder.encode(JSON.stringify(body)), withheld: true };
}
