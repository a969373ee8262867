import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { names } from "../../../src/contracts/index.js";
import {
  schedulerPermissions,
  workerPermissions,
  type NatsPermissions,
} from "../../../src/contracts/permissions.js";

/** NATS subject matching: `*` is one token, `>` the rest (one or more tokens). */
function matches(pattern: string, subject: string): boolean {
  const p = pattern.split(".");
  const s = subject.split(".");
  for (let i = 0; i < p.length; i++) {
    if (p[i] === ">") return s.length > i;
    if (i >= s.length || (p[i] !== "*" && p[i] !== s[i])) return false;
  }
  return p.length === s.length;
}
const mayPublish = (p: NatsPermissions, subject: string) =>
  p.publish.allow.some((a) => matches(a, subject));

describe("permissions", { timeout: 10_000 }, () => {
  const n = names("vmq");
  const a = workerPermissions("vmq", "A");
  const sched = schedulerPermissions("vmq");

  it("a scheduler may use a console session: open it, type, ping, close, read its output", () => {
    const base = n.consoleSubject("A", "vm1");
    const session = `${base}.0123456789abcdef`;
    for (const subject of [`${base}.open`, `${session}.in`, `${session}.ping`, `${session}.close`])
      assert.ok(mayPublish(sched, subject), subject);
    for (const subject of [`${session}.out`, `${session}.closed`])
      assert.ok(
        sched.subscribe.allow.some((x) => matches(x, subject)),
        subject,
      );
    assert.ok(!mayPublish(sched, `${session}.out`), "never the VM's side");
  });

  it("a worker may write only its own host's subjects and never publish commands", () => {
    for (const subject of [
      n.cmd("A", "vm1"),
      n.cmd("B", "vm1"),
      n.evt("B", "vm1"),
      n.dlq("B", "vm1"),
      `$KV.${n.hostsBucket}.B`,
      `$KV.${n.snapshotsBucket}.B`,
      `$KV.${n.snapshotsBucket}.B.vm1`,
      `$JS.API.CONSUMER.CREATE.${n.commandsStream}.${n.durable("B")}.${n.cmdFilter("B")}`,
      `$JS.API.CONSUMER.CREATE.${n.commandsStream}.${n.durable("A")}.${n.cmdFilter("B")}`,
      `$JS.API.CONSUMER.CREATE.${n.commandsStream}.${n.durable("A")}.vmq.cmd.>`,
      `$JS.API.CONSUMER.MSG.NEXT.${n.commandsStream}.${n.durable("B")}`,
      `$JS.API.CONSUMER.CREATE.${n.eventsStream}.x.${n.evtFilter("B")}`,
      `$JS.API.STREAM.DELETE.${n.eventsStream}`,
      `$JS.API.STREAM.PURGE.${n.eventsStream}`,
      `$JS.API.STREAM.UPDATE.${n.eventsStream}`,
      `$JS.API.STREAM.MSG.DELETE.${n.eventsStream}`,
      `$JS.API.STREAM.CREATE.OTHER`,
      // no read of another host's messages: by sequence, direct, or through a consumer
      `$JS.API.STREAM.MSG.GET.${n.commandsStream}`,
      `$JS.API.STREAM.MSG.GET.${n.eventsStream}`,
      `$JS.API.STREAM.MSG.GET.${n.dlqStream}`,
      `$JS.API.DIRECT.GET.${n.commandsStream}`,
      `$JS.API.DIRECT.GET.${n.commandsStream}.${n.cmd("B", "vm1")}`,
      `$JS.API.DIRECT.GET.${n.eventsStream}`,
      `$JS.API.DIRECT.GET.${n.dlqStream}`,
      `$JS.API.CONSUMER.CREATE.${n.commandsStream}.reader-A.${n.cmdFilter("B")}`,
      `$JS.API.CONSUMER.CREATE.${n.commandsStream}.reader-A.vmq.cmd.>`,
      `$JS.API.CONSUMER.CREATE.${n.commandsStream}.reader-B.${n.cmdFilter("B")}`,
      `$JS.API.CONSUMER.MSG.NEXT.${n.commandsStream}.reader-B`,
      `$JS.API.CONSUMER.CREATE.${n.dlqStream}.x.vmq.dlq.B.>`,
    ])
      assert.ok(!mayPublish(a, subject), `worker A may not publish ${subject}`);
    // its own commands, read back through its reader only
    for (const subject of [
      `$JS.API.CONSUMER.CREATE.${n.commandsStream}.reader-A.${n.cmd("A", "vm1")}`,
      `$JS.API.CONSUMER.CREATE.${n.commandsStream}.reader-A.${n.cmdFilter("A")}`,
      `$JS.API.CONSUMER.MSG.NEXT.${n.commandsStream}.reader-A`,
    ])
      assert.ok(mayPublish(a, subject), `worker A may publish ${subject}`);
    for (const subject of [n.evt("A", "vm1"), n.dlq("A", "vm1"), `$KV.${n.hostsBucket}.A`])
      assert.ok(mayPublish(a, subject), `worker A may publish ${subject}`);
    assert.ok(
      !workerPermissions("vmq", "A", { provision: false }).publish.allow.some((s) =>
        s.includes("STREAM.CREATE"),
      ),
    );
  });

  it("a scheduler publishes commands and queries, never events, views or dead letters", () => {
    assert.ok(mayPublish(sched, n.cmd("B", "vm1")));
    assert.ok(mayPublish(sched, n.api("B", "vm1", "state")));
    for (const subject of [
      n.evt("A", "vm1"),
      n.dlq("A", "vm1"),
      `$KV.${n.vmsBucket}.vm1`,
      `$KV.${n.hostsBucket}.A`,
      `$JS.API.CONSUMER.CREATE.${n.commandsStream}.${n.durable("A")}.${n.cmdFilter("A")}`,
      `$JS.API.STREAM.DELETE.${n.eventsStream}`,
    ])
      assert.ok(!mayPublish(sched, subject), `the scheduler may not publish ${subject}`);
  });

  it("docs/security.md shows exactly these sets", () => {
    const doc = readFileSync(join(import.meta.dirname, "../../../docs/security.md"), "utf8");
    const block = (marker: string): unknown => {
      const at = doc.indexOf(`<!-- generated: ${marker} -->`);
      assert.ok(at >= 0, `docs/security.md has no block for ${marker}`);
      const m = /```json\n([\s\S]*?)\n```/.exec(doc.slice(at));
      assert.ok(m?.[1], `no json block after ${marker}`);
      return JSON.parse(m[1]);
    };
    const hint =
      "update the block from `vmq permissions --host h1 --json` / `--role scheduler --json`";
    assert.deepEqual(block('workerPermissions("vmq", "h1")'), workerPermissions("vmq", "h1"), hint);
    assert.deepEqual(block('schedulerPermissions("vmq")'), schedulerPermissions("vmq"), hint);
  });
});
