/**
 * docs/wire-contract.md is complete against src/contracts: every error code of the closed table
 * with its retryable flag (and no code the table lacks), every command and event type, every
 * query, the DLQ headers and the stream and bucket names; and its JSON examples are what vmq's
 * own parsers read (schemas.test.ts validates them against schemas/).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { z } from "zod";
import {
  COMMAND_TYPES,
  DLQ_HEADERS,
  ERROR_CODES,
  EVENT_TYPES,
  HostLease,
  CancelRecord,
  HostRecord,
  MoveRecord,
  INVALID_VM_TOKEN,
  QUERY_NAMES,
  QUERY_REPLY_SCHEMAS,
  VmTombstone,
  VmView,
  names,
  parseCommand,
  upcastEvent,
  type ErrorCodeInfo,
} from "../../../src/contracts/index.js";
import { contractExamples, readContract } from "../../helpers/wire-contract.js";

const doc = readContract();
const table: Record<string, ErrorCodeInfo> = ERROR_CODES;

/** The rows of the error-code table: `| \`code\` | yes or no | ...`. */
function errorRows(): Map<string, string> {
  const rows = new Map<string, string>();
  const row = /^\|\s*`([a-z][a-z0-9-]*::[a-z][a-z0-9-]*)`\s*\|\s*(\S+)\s*\|/gm;
  for (const m of doc.matchAll(row)) {
    const [, code = "", retryable = ""] = m;
    assert.ok(!rows.has(code), `${code} has two rows in docs/wire-contract.md`);
    rows.set(code, retryable);
  }
  return rows;
}

describe("docs/wire-contract.md", () => {
  it("lists every error code of src/contracts/error-codes.ts with its retryable flag", () => {
    const rows = errorRows();
    const missing = Object.keys(table).filter((code) => !rows.has(code));
    assert.deepEqual(missing, [], "codes missing from the error-code table of the contract");
    for (const [code, info] of Object.entries(table))
      assert.equal(rows.get(code), info.retryable ? "yes" : "no", `${code}: retryable flag`);
  });

  it("lists no error code the table does not have", () => {
    const stale = [...errorRows().keys()].filter((code) => !Object.hasOwn(table, code));
    assert.deepEqual(stale, [], "codes in the contract but not in src/contracts/error-codes.ts");
  });

  it("names every command type, event type and query", () => {
    for (const type of [...COMMAND_TYPES, ...EVENT_TYPES])
      assert.ok(doc.includes(`\`${type}\``), `${type} is not named`);
    for (const q of QUERY_NAMES) assert.ok(doc.includes(`\`${q}\``), `query ${q} is not named`);
  });

  it("names every DLQ header and the token of bad input without a vmId", () => {
    const { originalPrefix, ...headers } = DLQ_HEADERS;
    for (const h of Object.values(headers)) assert.ok(doc.includes(`\`${h}\``), h);
    assert.ok(doc.includes(`\`${originalPrefix}<name>\``), originalPrefix);
    assert.ok(doc.includes(`\`${INVALID_VM_TOKEN}\``), INVALID_VM_TOKEN);
  });

  it("names every stream, bucket and subject pattern of the default prefix", () => {
    const n = names("vmq");
    for (const name of [
      n.commandsStream,
      n.eventsStream,
      n.dlqStream,
      `${n.commandsStream}_ADVISORIES`,
      n.vmsBucket,
      n.hostsBucket,
      n.tombstonesBucket,
      n.snapshotsBucket,
      n.movesBucket,
      n.cmd("<host>", "<vmId>"),
      n.evt("<host>", "<vmId>"),
      n.dlq("<host>", "<vmId>"),
      `${n.prefix}.api.<host>.<vmId>.<query>`,
      n.durable("<host>"),
    ])
      assert.ok(doc.includes(`\`${name}\``), `${name} is not named`);
  });

  it("has examples that vmq's own parsers read as they are", () => {
    const records: Record<string, z.ZodType> = {
      "records/vm-view.v1.json": VmView,
      "records/host-record.v1.json": HostRecord,
      "records/host-lease.v1.json": HostLease,
      "records/cancel.v1.json": CancelRecord,
      "records/move.v1.json": MoveRecord,
      "records/vm-tombstone.v1.json": VmTombstone,
    };
    const examples = contractExamples(doc);
    assert.ok(examples.length >= 20, `only ${examples.length} examples`);
    for (const { schema = "", body, line } of examples) {
      const where = `docs/wire-contract.md:${line} (${schema})`;
      const query = /^queries\/(.+)\.reply\.v1\.json$/.exec(schema)?.[1];
      if (schema.startsWith("commands/")) {
        const vmId = (body as { vmId?: string }).vmId;
        const parsed = parseCommand(JSON.stringify(body), vmId);
        assert.ok(parsed.ok, `${where}: ${parsed.ok ? "" : parsed.message}`);
      } else if (schema.startsWith("events/")) {
        const read = upcastEvent(body);
        assert.ok(read.ok, `${where}: ${read.ok ? "" : read.message}`);
      } else if (query !== undefined && Object.hasOwn(QUERY_REPLY_SCHEMAS, query)) {
        const reply = QUERY_REPLY_SCHEMAS[query as keyof typeof QUERY_REPLY_SCHEMAS];
        assert.ok(reply.safeParse(body).success, where);
      } else {
        const record = records[schema];
        assert.ok(record, `${where}: no parser for this schema`);
        assert.ok(record.safeParse(body).success, where);
      }
    }
  });
});
