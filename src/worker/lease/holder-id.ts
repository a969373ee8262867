import { randomUUID } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";

const FILE = "worker-id";

/**
 * This data dir's worker id, made once: a worker restarted on the same data dir takes back its
 * own lease at once instead of waiting a TTL as a standby. Safe because one data dir is used by
 * one process at a time (the data-dir lock).
 */
export async function holderId(dataDir: string): Promise<string> {
  const path = join(dataDir, FILE);
  const have = (await readFile(path, "utf8").catch(() => "")).trim();
  if (/^[0-9a-f-]{36}$/.test(have)) return have;
  const id = randomUUID();
  await mkdir(dataDir, { recursive: true });
  await writeFile(path, `${id}\n`, { mode: 0o644 });
  return id;
}
