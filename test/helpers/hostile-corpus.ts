/**
 * The hostile-command corpus of hostile-input.test.ts: fast-check arbitraries, one category per
 * kind of bad input, each drawn to be invalid (checked against the worker's own parser).
 */
import fc from "fast-check";
import type { JetStreamManager } from "@nats-io/jetstream";
import {
  DLQ_HEADERS,
  MAX_COMMAND_BYTES,
  parseCommand,
  type CommandInput,
} from "../../src/contracts/index.js";
import { SPEC } from "./worker-harness.js";

export const SEED = Number(process.env.VMQ_HOSTILE_SEED ?? 20261125);
const BAD_COUNT = Number(process.env.VMQ_HOSTILE_COUNT ?? 2500);
export const VALID_VMS = 60; // each: prepare + start, interleaved with the corpus
export const REPLAY_VMS = 10;

const enc = new TextEncoder();
export const HOSTILE_POOL = Array.from({ length: 40 }, (_, i) => `hx-${i}`);
/** Publishable subject tokens that are not valid vmIds (the DLQ files them under `_invalid`). */
const INVALID_TOKENS = [
  "_etc",
  "-rf",
  "~root",
  "/etc/passwd",
  "C:\\Windows",
  "%2e%2e",
  "vm\u00e9",
  "\u202eevil",
  "$JS",
  "a".repeat(65),
  "a:b",
  "a/b",
];

export type Json = Record<string, unknown>;
interface Hostile {
  category: string;
  token: string;
  raw: Uint8Array;
}

let uniq = 0;
const cid = () => `hc-${++uniq}-${Math.random().toString(36).slice(2, 8)}`;

export function valid(type: CommandInput["type"], vmId: string): Json {
  const c: Json = {
    type,
    version: 1,
    commandId: cid(),
    vmId,
    issuedAt: new Date().toISOString(),
  };
  if (type === "vm.prepare")
    c.spec = {
      ...SPEC,
      network: { type: "tap", bridge: "br0" },
      cloudInit: { userData: "#cloud-config\n", instanceId: "i-1", hostname: "web-1" },
      ssh: { user: "ops", publicKey: "ssh-ed25519 AAAAC3Nza ops@x" },
    };
  if (type === "vm.stop") Object.assign(c, { timeoutMs: 1000, force: "after-timeout" });
  if (type === "vm.destroy") c.timeoutMs = 1000;
  return c;
}

const setPath = (o: Json, path: string[], v: unknown, remove = false): Json => {
  const copy = structuredClone(o);
  let cur: Json = copy;
  for (const k of path.slice(0, -1)) {
    if (typeof cur[k] !== "object" || cur[k] === null) cur[k] = {};
    cur = cur[k] as Json;
  }
  const last = path.at(-1)!;
  if (remove) delete cur[last];
  else cur[last] = v;
  return copy;
};

export const json = (o: unknown) => enc.encode(JSON.stringify(o));
const typeArb = fc.constantFrom<CommandInput["type"]>(
  "vm.prepare",
  "vm.start",
  "vm.stop",
  "vm.suspend",
  "vm.resume",
  "vm.destroy",
);
const poolToken = fc.constantFrom(...HOSTILE_POOL);
/** Mostly a valid vmId; sometimes a token that is not one. */
const anyToken = fc.oneof(
  { weight: 5, arbitrary: poolToken },
  { weight: 1, arbitrary: fc.constantFrom(...INVALID_TOKENS) },
);
/** A valid command on a subject token (body vmId = token), for the mutations below. */
const baseArb = fc
  .tuple(typeArb, anyToken)
  .map(([type, token]) => ({ token, body: valid(type, token) }));
const prepareArb = anyToken.map((token) => ({ token, body: valid("vm.prepare", token) }));
const wrongValue = fc.oneof(
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.integer(), { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 5 }), fc.integer(), { maxKeys: 2 }),
  fc.string({ maxLength: 20 }),
);
const ENVELOPE_PATHS = [
  ["type"],
  ["version"],
  ["commandId"],
  ["vmId"],
  ["issuedAt"],
  ["correlationId"],
  ["expectedVersion"],
];
const SPEC_PATHS = [
  ["spec"],
  ["spec", "name"],
  ["spec", "imagePath"],
  ["spec", "vcpus"],
  ["spec", "memoryMb"],
  ["spec", "diskGb"],
  ["spec", "backend"],
  ["spec", "uefi"],
  ["spec", "network"],
  ["spec", "network", "bridge"],
  ["spec", "cloudInit"],
  ["spec", "cloudInit", "userData"],
  ["spec", "ssh", "publicKey"],
];
const notValid = (h: Hostile) => !parseCommand(h.raw, h.token).ok;

const categories: Record<string, fc.Arbitrary<Hostile>> = {
  "not JSON": fc
    .tuple(
      anyToken,
      fc.oneof(
        fc.string({ maxLength: 200 }).map((s) => enc.encode(s)),
        fc.uint8Array({ minLength: 0, maxLength: 300 }),
        baseArb.chain(({ body }) => {
          const s = JSON.stringify(body);
          return fc.integer({ min: 0, max: s.length - 1 }).map((k) => enc.encode(s.slice(0, k)));
        }),
        fc
          .constantFrom("", "null", "[]", "42", '"vm.start"', "true", "\u0000", "\uFEFF{}", "{,}")
          .map((s) => enc.encode(s)),
        fc.constant(Uint8Array.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d])), // invalid UTF-8
      ),
    )
    .map(([token, raw]) => ({ category: "not JSON", token, raw })),
  "wrong types": fc
    .tuple(prepareArb, fc.constantFrom(...ENVELOPE_PATHS, ...SPEC_PATHS), wrongValue)
    .map(([b, path, v]) => ({
      category: "wrong types",
      token: b.token,
      raw: json(setPath(b.body, path, v)),
    })),
  "missing fields": fc
    .tuple(
      prepareArb,
      fc.subarray(
        [
          ["type"],
          ["version"],
          ["commandId"],
          ["vmId"],
          ["issuedAt"],
          ["spec"],
          ["spec", "name"],
          ["spec", "imagePath"],
          ["spec", "vcpus"],
          ["spec", "memoryMb"],
          ["spec", "cloudInit", "userData"],
          ["spec", "ssh", "user"],
          ["spec", "network", "bridge"],
        ],
        { minLength: 1 },
      ),
    )
    .map(([b, paths]) => ({
      category: "missing fields",
      token: b.token,
      raw: json(paths.reduce((o, p) => setPath(o, p, undefined, true), b.body)),
    })),
  "huge fields": fc
    .tuple(
      prepareArb,
      fc.oneof(
        fc
          .tuple(
            fc.constantFrom(
              ["spec", "name"],
              ["spec", "cloudInit", "userData"],
              ["correlationId"],
              ["padding"],
            ),
            // Over the body limit, within the stream's max_msg_size: bigger ones never reach the
            // worker (refused at publish; test/integration/oversized-input.test.ts).
            fc.integer({ min: MAX_COMMAND_BYTES + 1, max: MAX_COMMAND_BYTES + 2048 }),
          )
          .map(([p, n]) => [p, "x".repeat(n)] as const),
        fc.constantFrom(
          [["spec", "name"], "n".repeat(129)],
          [["commandId"], "c".repeat(129)],
          [["correlationId"], "r".repeat(129)],
          [["spec", "cloudInit", "userData"], "u".repeat(32 * 1024 + 1)],
          [["spec", "imagePath"], "/images/" + "i".repeat(4096)],
          [["spec", "ssh", "publicKey"], "ssh-ed25519 " + "A".repeat(16 * 1024)],
          [["spec", "vcpus"], 65],
          [["spec", "vcpus"], 2 ** 53],
          [["spec", "memoryMb"], 1048577],
          [["spec", "memoryMb"], 1e308],
          [["spec", "diskGb"], 65537],
          [["expectedVersion"], -1],
          [["expectedVersion"], 2 ** 64],
          [["spec", "network", "bridge"], "b".repeat(40)],
          [["spec", "cloudInit", "hostname"], "h".repeat(300)],
        ),
      ),
    )
    .map(([b, [path, v]]) => ({
      category: "huge fields",
      token: b.token,
      raw: json(setPath(b.body, [...path], v)),
    })),
  "unicode and control characters": fc
    .tuple(
      prepareArb,
      fc.oneof(
        fc
          .string({ unit: "grapheme", minLength: 1, maxLength: 20 })
          .filter((s) => /[^\x20-\x7e]/.test(s))
          .map((s) => [["commandId"], `c${s}`] as const),
        fc
          .string({ unit: "binary", maxLength: 10 })
          .map((s) => [["spec", "name"], `n${s}\u0000${s}`] as const),
        fc
          .string({ maxLength: 10 })
          .map((s) => [["spec", "cloudInit", "userData"], `#cloud-config\n${s}\u0000`] as const),
        fc.constantFrom(
          [["commandId"], "c\n1"],
          [["commandId"], "c1\t"],
          [["commandId"], "c\u00001"],
          [["commandId"], "\u202ec1"],
          [["spec", "ssh", "user"], "r\u00f6\u00f6t"],
          [["spec", "ssh", "publicKey"], "ssh-ed25519 AAAA\nssh-rsa BBBB"],
          [["spec", "cloudInit", "hostname"], "h\u00e9llo"],
          [["spec", "cloudInit", "instanceId"], "i d"],
          [["spec", "network", "bridge"], "br 0"],
          [["issuedAt"], "2026-11-25T10:00:00Z\u0000"],
          [["type"], "vm.start\u0000"],
          [["type"], "vm.st\u0430rt"], // Cyrillic a
        ),
      ),
    )
    .map(([b, [path, v]]) => ({
      category: "unicode and control characters",
      token: b.token,
      raw: json(setPath(b.body, [...path], v)),
    })),
  "path traversal": fc
    .oneof(
      // traversal in the body's vmId, on a valid subject: a mismatch
      fc
        .tuple(
          poolToken,
          fc.constantFrom(
            "../etc",
            "../../../../etc/passwd",
            "/etc/passwd",
            "a/../b",
            "..",
            "vm\u0000",
          ),
        )
        .map(([token, vmId]) => ({ token, body: { ...valid("vm.start", token), vmId } })),
      // the same on the subject as well (publishable tokens only)
      fc
        .constantFrom("/etc/passwd", "a/b", "C:\\Windows", "%2e%2e")
        .map((token) => ({ token, body: valid("vm.destroy", token) })),
      fc
        .tuple(
          prepareArb,
          fc.constantFrom(
            [["spec", "imagePath"], "../../etc/shadow"],
            [["spec", "imagePath"], "/images/../../etc/shadow"],
            [["spec", "imagePath"], "base/../../../root/.ssh/id_rsa"],
            [["spec", "imagePath"], "..\\..\\windows\\system32"],
            [["spec", "imagePath"], ".."],
            [["spec", "imagePath"], "/images/base.qcow2\u0000.png"],
            [["spec", "name"], "web\u0000../../etc"],
            [["spec", "cloudInit", "instanceId"], "../../i-1"],
            [["spec", "cloudInit", "hostname"], "../evil"],
            [["spec", "network", "bridge"], "../br0"],
            [["spec", "network"], { type: "vnic", name: "/dev/vnic0" }],
            [["spec", "ssh", "user"], "../root"],
          ),
        )
        .map(([b, [path, v]]) => ({ token: b.token, body: setPath(b.body, [...path], v) })),
    )
    .map(({ token, body }) => ({ category: "path traversal", token, raw: json(body) })),
  "subject/body vmId mismatch": fc
    .tuple(
      baseArb,
      fc.oneof(
        fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/),
        fc.constantFrom(...HOSTILE_POOL),
        wrongValue,
      ),
    )
    .map(([b, vmId]) => ({
      category: "subject/body vmId mismatch",
      token: b.token,
      raw: json({ ...b.body, vmId }),
    })),
  "unknown types and versions": fc
    .tuple(
      baseArb,
      fc.oneof(
        fc
          .oneof(
            fc.string({ maxLength: 30 }),
            fc.constantFrom(
              "__proto__",
              "constructor",
              "toString",
              "hasOwnProperty",
              "VM.START",
              "vm.start ",
              "vm.teleport",
              "vm.prepare.v2",
            ),
          )
          .map((type) => ({ type })),
        fc
          .constantFrom(0, 2, -1, 1.5, "1", null, 1e21, true, [1], { v: 1 })
          .map((version) => ({ version })),
        fc.integer({ min: 2, max: 1_000_000 }).map((version) => ({ version })),
      ),
    )
    .map(([b, patch]) => ({
      category: "unknown types and versions",
      token: b.token,
      raw: json({ ...b.body, ...patch }),
    })),
};

/**
 * Categories built to be invalid whatever the draw: not filtered, so a contract that let one
 * of them through (a `..` image path, say) fails the test instead of shrinking the corpus.
 */
const ALWAYS_INVALID = new Set(["huge fields", "unicode and control characters", "path traversal"]);

export function corpus(): Hostile[] {
  const arbs = Object.entries(categories).map(([name, arb]) =>
    ALWAYS_INVALID.has(name) ? arb : arb.filter(notValid),
  );
  const all = fc.sample(fc.oneof(...arbs), { numRuns: BAD_COUNT, seed: SEED });
  // every category at least a few times, whatever the seed
  for (const arb of arbs) all.push(...fc.sample(arb, { numRuns: 5, seed: SEED }));
  return all;
}

/** Every message of a stream (optionally under a filter), with its headers. */
export async function readStream(
  jsm: JetStreamManager,
  stream: string,
): Promise<{ seq: number; subject: string; data: Uint8Array; code?: string; cmdSeq?: number }[]> {
  const info = await jsm.streams.info(stream);
  const out = [];
  for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages; seq++) {
    const m = await jsm.streams.getMessage(stream, { seq }).catch(() => null);
    if (!m) continue;
    out.push({
      seq,
      subject: m.subject,
      data: m.data,
      ...(m.header ? { code: m.header.get(DLQ_HEADERS.code) } : {}),
      ...(m.header ? { cmdSeq: Number(m.header.get(DLQ_HEADERS.streamSeq)) } : {}),
    });
  }
  return out;
}
