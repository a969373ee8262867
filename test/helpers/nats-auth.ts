import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { encodeAccount, encodeOperator, encodeUser, fmtCreds } from "@nats-io/jwt";
import { createAccount, createOperator, createUser } from "@nats-io/nkeys";
import type { NatsPermissions } from "../../src/contracts/permissions.js";

/** nats-server configuration text for a `permissions` value (nats-server reads JSON). */
export const permissionsBlock = (p: NatsPermissions): string => JSON.stringify(p);

/** A user/password or token authorization block (optionally with permissions per user). */
export function usersConfig(
  users: { user: string; password: string; permissions?: NatsPermissions }[],
): string {
  return `authorization { users: ${JSON.stringify(users)} }`;
}

export interface TlsFiles {
  caCert: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  /** A CA that signed nothing the server presents. */
  otherCaCert: string;
}

async function openssl(args: string[], cwd: string): Promise<void> {
  await execa("openssl", args, { cwd, stdin: "ignore" });
}

/** A CA, a server certificate for 127.0.0.1/localhost and a client certificate, via openssl. */
export async function makeTls(dir: string): Promise<TlsFiles> {
  const f = (n: string) => join(dir, n);
  const key = (n: string) => openssl(["genrsa", "-out", f(n), "2048"], dir);
  const ca = async (name: string, cn: string) => {
    await key(`${name}.key`);
    await openssl(
      ["req", "-x509", "-new", "-key", f(`${name}.key`), "-sha256", "-days", "2"]
        .concat(["-subj", `/CN=${cn}`, "-out", f(`${name}.pem`)])
        .concat([
          "-addext",
          "basicConstraints=critical,CA:TRUE",
          "-addext",
          "keyUsage=keyCertSign",
        ]),
      dir,
    );
  };
  await ca("ca", "vmq test CA");
  await ca("other-ca", "someone else's CA");
  const leaf = async (name: string, cn: string, ext: string) => {
    await key(`${name}.key`);
    await openssl(
      ["req", "-new", "-key", f(`${name}.key`), "-subj", `/CN=${cn}`, "-out", f(`${name}.csr`)],
      dir,
    );
    await writeFile(f(`${name}.ext`), ext);
    await openssl(
      ["x509", "-req", "-in", f(`${name}.csr`), "-CA", f("ca.pem"), "-CAkey", f("ca.key")]
        .concat(["-CAcreateserial", "-days", "2", "-sha256", "-extfile", f(`${name}.ext`)])
        .concat(["-out", f(`${name}.pem`)]),
      dir,
    );
  };
  await leaf(
    "server",
    "localhost",
    "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
  );
  await leaf("client", "vmq-worker-h1", "extendedKeyUsage=clientAuth\n");
  return {
    caCert: f("ca.pem"),
    serverCert: f("server.pem"),
    serverKey: f("server.key"),
    clientCert: f("client.pem"),
    clientKey: f("client.key"),
    otherCaCert: f("other-ca.pem"),
  };
}

/** nats-server TLS block requiring and verifying client certificates from `t.caCert`. */
export const tlsConfig = (t: TlsFiles): string =>
  `tls { cert_file: ${JSON.stringify(t.serverCert)}, key_file: ${JSON.stringify(t.serverKey)}, ca_file: ${JSON.stringify(t.caCert)}, verify: true, timeout: 5 }`;

export interface JwtSetup {
  /** nats-server configuration: operator, memory resolver with the account preloaded. */
  config: string;
  /** Writes a creds file (user JWT + seed) for a user of the account, optionally restricted. */
  creds(path: string, name: string, permissions?: NatsPermissions): Promise<string>;
}

/** An operator, one JetStream-enabled account and its users, for a memory resolver. */
export async function makeJwt(): Promise<JwtSetup> {
  const okp = createOperator();
  const akp = createAccount();
  const sys = createAccount(); // JetStream needs a system account
  const operatorJwt = await encodeOperator("vmq-test-operator", okp, {
    system_account: sys.getPublicKey(),
  });
  const sysJwt = await encodeAccount("SYS", sys, {}, { signer: okp });
  const accountJwt = await encodeAccount(
    "VMQ",
    akp,
    {
      limits: {
        disk_storage: -1,
        mem_storage: -1,
        streams: -1,
        consumer: -1,
        conn: -1,
        subs: -1,
        data: -1,
        payload: -1,
      },
    },
    { signer: okp },
  );
  return {
    config: [
      `operator: ${operatorJwt}`,
      `system_account: ${sys.getPublicKey()}`,
      "resolver: MEMORY",
      `resolver_preload: { ${akp.getPublicKey()}: ${accountJwt}, ${sys.getPublicKey()}: ${sysJwt} }`,
    ].join("\n"),
    async creds(path, name, permissions) {
      const ukp = createUser();
      const jwt = await encodeUser(
        name,
        ukp,
        akp,
        permissions
          ? {
              pub: { allow: permissions.publish.allow, deny: permissions.publish.deny ?? [] },
              sub: { allow: permissions.subscribe.allow, deny: permissions.subscribe.deny ?? [] },
              ...(permissions.allow_responses ? { resp: { max: 1, ttl: 0 } } : {}),
            }
          : {},
      );
      await writeFile(path, fmtCreds(jwt, ukp), { mode: 0o600 });
      return path;
    },
  };
}
