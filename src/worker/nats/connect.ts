import { readFileSync } from "node:fs";
import {
  AuthorizationError,
  connect,
  credsAuthenticator,
  nkeyAuthenticator,
  type ConnectionOptions,
  type NatsConnection,
} from "@nats-io/transport-node";
import type { NatsConfig } from "../../config/config.js";
import { VmqError } from "../../lib/errors.js";

/** The connection section without the embedded server's port, every field optional. */
export type ConnectionConfig = Partial<Omit<NatsConfig, "embeddedPort">>;

/**
 * NATS connection options from flags/env: creds file, nkey seed, user/password, token, TLS.
 * `extra` adds client settings of the caller's own (the worker's per-host inbox prefix).
 */
export function connectionOptions(
  c: ConnectionConfig,
  name: string,
  extra: Pick<ConnectionOptions, "inboxPrefix"> = {},
): ConnectionOptions {
  const opts: ConnectionOptions = {
    ...extra,
    servers: (c.nats ?? "nats://127.0.0.1:4222").split(",").map((s) => s.trim()),
    name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    // nats.js otherwise builds two Errors with stack traces for every request and JetStream
    // publish, used or not: a fifth of the worker's CPU at load (see docs/benchmark.md).
    noAsyncTraces: true,
  };
  if (c.creds) opts.authenticator = credsAuthenticator(checkedCreds(c.creds));
  else if (c.nkeySeed)
    opts.authenticator = nkeyAuthenticator(
      new TextEncoder().encode(readSecret(c.nkeySeed, "--nkey-seed").toString("utf8").trim()),
    );
  if (c.user !== undefined) opts.user = c.user;
  if (c.password !== undefined) opts.pass = c.password;
  if (c.token !== undefined) opts.token = c.token;
  if (c.tlsCa || c.tlsCert || c.tlsKey) {
    // Read now so a wrong path is a config error naming the flag, not a failed TLS handshake.
    if (c.tlsCa) readSecret(c.tlsCa, "--tls-ca");
    if (c.tlsCert) readSecret(c.tlsCert, "--tls-cert");
    if (c.tlsKey) readSecret(c.tlsKey, "--tls-key");
    opts.tls = {
      ...(c.tlsCa ? { caFile: c.tlsCa } : {}),
      ...(c.tlsCert ? { certFile: c.tlsCert } : {}),
      ...(c.tlsKey ? { keyFile: c.tlsKey } : {}),
    };
  }
  return opts;
}

/** A credentials file, or a config error that names the flag (not "NATS is unreachable"). */
function readSecret(path: string, flag: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new VmqError(
      "config::unreadable-file",
      `cannot read the ${flag} file ${path}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`,
      { cause: e, hint: `Check the path given to ${flag} (or its environment variable).` },
    );
  }
}

/**
 * A creds file holds a JWT and an nkey seed between BEGIN/END lines; anything else would only
 * fail later, inside the connect, where it reads as "NATS is unreachable".
 */
function checkedCreds(path: string): Buffer {
  const data = readSecret(path, "--creds");
  const text = data.toString("utf8");
  if (!/-----BEGIN NATS USER JWT-----/.test(text) || !/-----BEGIN USER NKEY SEED-----/.test(text))
    throw new VmqError(
      "config::invalid-creds",
      `the --creds file ${path} is not a NATS credentials file (no user JWT and nkey seed blocks)`,
      { hint: "Give the .creds file nsc or your operator generated for this account." },
    );
  return data;
}

/**
 * Connects, turning a failure into a coded error: refused credentials, TLS, or unreachable
 * (an unreadable credentials file is a config::unreadable-file error before any connection).
 */
export async function connectNats(
  c: ConnectionConfig,
  name: string,
  extra: Pick<ConnectionOptions, "inboxPrefix"> = {},
): Promise<NatsConnection> {
  const opts = connectionOptions(c, name, extra);
  try {
    return await connect(opts);
  } catch (e) {
    const where = (c.nats ?? "nats://127.0.0.1:4222").replace(/\/\/[^@/]*@/, "//"); // no userinfo
    const text = e instanceof Error ? `${e.message} ${String((e as { code?: unknown }).code)}` : "";
    const code =
      e instanceof AuthorizationError || /authori[sz]ation|authentication/i.test(text)
        ? "nats::auth-failed"
        : /certificate|tls|ssl|CERT_/i.test(text)
          ? "nats::tls"
          : "nats::unreachable";
    throw new VmqError(
      code,
      `cannot connect to NATS at ${where}: ${e instanceof Error ? e.message : String(e)}`,
      { cause: e, retryable: code === "nats::unreachable" },
    );
  }
}
