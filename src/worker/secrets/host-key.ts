import { constants } from "node:fs";
import { mkdir, open, readFile, stat } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { createCurve, fromCurveSeed, type KeyPair } from "@nats-io/nkeys";
import type { SealedUserData } from "../../contracts/index.js";
import { VmqError } from "../../lib/errors.js";
import { openUserData } from "../../lib/user-data.js";

/** The default key file under the data dir. */
export const HOST_KEY_FILE = "host.xk";

/** This host's curve key pair: its public key goes into the host record, its seed never leaves. */
export interface HostKey {
  readonly publicKey: string;
  readonly file: string;
  /** Whether this start created the file. */
  readonly created: boolean;
  /** Opens user-data sealed to this host (userdata::wrong-host, userdata::unsealable). */
  open(sealed: SealedUserData): string;
}

/**
 * Loads the host key from `file` (given by --host-key-file: it must exist) or from
 * `<dataDir>/host.xk`, created mode 0600 on first start. A file that group or others may read
 * or write is refused (`hostkey::insecure-file`), as ssh refuses such a key.
 */
export async function loadHostKey(opts: { dataDir: string; file?: string }): Promise<HostKey> {
  const file = resolve(opts.file ?? resolve(opts.dataDir, HOST_KEY_FILE));
  let created = false;
  if (opts.file === undefined) created = await createIfMissing(file);
  let mode: number;
  try {
    mode = (await stat(file)).mode;
  } catch (e) {
    throw new VmqError(
      "config::unreadable-file",
      `cannot read the host key file ${file}: ${(e as Error).message}`,
    );
  }
  if ((mode & 0o077) !== 0) {
    throw new VmqError(
      "hostkey::insecure-file",
      `host key file ${file} has mode ${(mode & 0o777).toString(8).padStart(4, "0")}: group or others may read it`,
      { hint: `chmod 600 ${file}` },
    );
  }
  const kp = parseSeed(await readFile(file, "utf8"), file);
  return {
    publicKey: kp.getPublicKey(),
    file,
    created,
    open: (sealed) => openUserData(sealed, kp),
  };
}

/** A key pair that lives in memory only (tests, and pipelines built without a data dir). */
export function memoryHostKey(): HostKey {
  const kp = createCurve();
  return {
    publicKey: kp.getPublicKey(),
    file: "",
    created: true,
    open: (s) => openUserData(s, kp),
  };
}

/** Writes a new seed with O_EXCL, so two starts never write two keys; false if it existed. */
async function createIfMissing(file: string): Promise<boolean> {
  await mkdir(dirname(file), { recursive: true });
  let fh;
  try {
    fh = await open(file, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw e;
  }
  const kp = createCurve();
  try {
    await fh.writeFile(`${new TextDecoder().decode(kp.getSeed())}\n`);
    await fh.sync();
  } finally {
    kp.clear();
    await fh.close();
  }
  return true;
}

function parseSeed(text: string, file: string): KeyPair {
  const seed = text.trim();
  try {
    if (!/^SX[A-Z2-7]+$/.test(seed)) throw new Error("not a curve seed");
    const kp = fromCurveSeed(new TextEncoder().encode(seed));
    kp.getPublicKey();
    return kp;
  } catch {
    // The message never quotes the file's content: it is a secret.
    throw new VmqError(
      "hostkey::invalid",
      `host key file ${file} does not hold a curve seed (SX...)`,
    );
  }
}
