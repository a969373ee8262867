import { readFileSync } from "node:fs";
import {
  connect,
  credsAuthenticator,
  nkeyAuthenticator,
  type ConnectionOptions,
  type NatsConnection,
} from "@nats-io/transport-node";
import type { ResolvedConfig } from "../config/config.js";

export type ConnectionConfig = Pick<
  ResolvedConfig,
  "creds" | "nkeySeed" | "user" | "password" | "token" | "tlsCa" | "tlsCert" | "tlsKey"
> & { nats?: string | undefined };

/** NATS connection options from flags/env: creds file, nkey seed, user/password, token, TLS. */
export function connectionOptions(c: ConnectionConfig, name: string): ConnectionOptions {
  const opts: ConnectionOptions = {
    servers: (c.nats ?? "nats://127.0.0.1:4222").split(",").map((s) => s.trim()),
    name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    // nats.js otherwise builds two Errors with stack traces for every request and JetStream
    // publish, used or not: a fifth of the worker's CPU at load (see docs/benchmark.md).
    noAsyncTraces: true,
  };
  if (c.creds) opts.authenticator = credsAuthenticator(readFileSync(c.creds));
  else if (c.nkeySeed)
    opts.authenticator = nkeyAuthenticator(
      new TextEncoder().encode(readFileSync(c.nkeySeed, "utf8").trim()),
    );
  if (c.user !== undefined) opts.user = c.user;
  if (c.password !== undefined) opts.pass = c.password;
  if (c.token !== undefined) opts.token = c.token;
  if (c.tlsCa || c.tlsCert || c.tlsKey) {
    opts.tls = {
      ...(c.tlsCa ? { caFile: c.tlsCa } : {}),
      ...(c.tlsCert ? { certFile: c.tlsCert } : {}),
      ...(c.tlsKey ? { keyFile: c.tlsKey } : {}),
    };
  }
  return opts;
}

export async function connectNats(c: ConnectionConfig, name: string): Promise<NatsConnection> {
  return connect(connectionOptions(c, name));
}
