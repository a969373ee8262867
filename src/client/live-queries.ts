import { randomUUID } from "node:crypto";
import type { NatsConnection } from "@nats-io/transport-node";
import {
  QUERY_REPLY_SCHEMAS,
  type ConsoleEndpoint,
  type GuestAddress,
  type Names,
  type QueryName,
  type QueryReply,
} from "../contracts/index.js";
import { receivedCode, VmqError } from "../lib/errors.js";
import { ConsoleSession } from "./console-session.js";

/** Requests answered live by a VM's host worker: queries and the console relay. */

const encoder = new TextEncoder();

export async function askQuery<Q extends QueryName>(
  nc: NatsConnection,
  names: Names,
  host: string,
  vmId: string,
  query: Q,
  timeoutMs = 15_000,
): Promise<QueryReply<Q>> {
  const m = await nc.request(names.api(host, vmId, query), undefined, { timeout: timeoutMs });
  return QUERY_REPLY_SCHEMAS[query].parse(m.json()) as QueryReply<Q>;
}

const failed = (error: { code: string; message: string; hint?: string | undefined }) =>
  new VmqError(receivedCode(error.code), error.message, error.hint ? { hint: error.hint } : {});

/** The guest's address and the host ports forwarded to it (QEMU user networking). */
export async function guestAddressOf(
  nc: NatsConnection,
  names: Names,
  host: string,
  vmId: string,
): Promise<GuestAddress> {
  const r = await askQuery(nc, names, host, vmId, "guest-ip");
  if (!r.ok) throw failed(r.error);
  const { ok: _ok, ...address } = r;
  return address;
}

export async function consoleEndpointOf(
  nc: NatsConnection,
  names: Names,
  host: string,
  vmId: string,
): Promise<ConsoleEndpoint> {
  const r = await askQuery(nc, names, host, vmId, "console");
  if (!r.ok) throw failed(r.error);
  return r.console;
}

/**
 * An interactive serial console relayed over NATS by the VM's host worker. The session's
 * output is subscribed to before the open request is sent, so no early byte is lost.
 */
export async function openConsoleOn(
  nc: NatsConnection,
  names: Names,
  host: string,
  vmId: string,
): Promise<ConsoleSession> {
  const base = names.consoleSubject(host, vmId);
  const id = randomUUID().replaceAll("-", "");
  let session = new ConsoleSession(nc, `${base}.${id}`);
  let r:
    | { ok: true; session: string; subject: string }
    | { ok: false; error: { code: string; message: string; hint?: string } };
  try {
    const m = await nc.request(`${base}.open`, encoder.encode(JSON.stringify({ session: id })), {
      timeout: 15_000,
    });
    r = m.json();
  } catch (e) {
    session.close();
    throw e;
  }
  if (!r.ok) {
    session.close();
    throw failed(r.error);
  }
  if (r.subject !== session.subject) {
    // A worker from before client-chosen sessions picked its own id.
    session.close();
    session = new ConsoleSession(nc, r.subject);
  }
  return session;
}
