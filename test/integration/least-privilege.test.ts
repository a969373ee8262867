/**
 * Per-host least privilege: each worker connects as a user holding exactly
 * `workerPermissions(prefix, host)` and the scheduler exactly `schedulerPermissions(prefix)`
 * (the sets docs/security.md prints). The fleet runs the whole lifecycle without a single
 * permission violation in the server's log, and host A's credentials cannot publish a command
 * for host B, append B's events, write B's host record, view records, lease or DLQ, or pull
 * B's commands; nor read any message of B's (commands, events, dead letters) by sequence,
 * direct get, a consumer of its own or a subscription, while A's own reader reads A's commands
 * back.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { AckPolicy, jetstream, jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { VmqClient } from "../../src/client/index.js";
import { names as namesFor, type Names } from "../../src/contracts/index.js";
import {
  commandReaderName,
  schedulerPermissions,
  operatorPermissions,
  workerInboxPrefix,
  workerPermissions,
  type NatsPermissions,
} from "../../src/contracts/permissions.js";
import { CommandReader } from "../../src/worker/nats/command-reader.js";
import type { Worker } from "../../src/worker/worker.js";
import { usersConfig } from "../helpers/nats-auth.js";
import {
  assertSubscriptionRefused,
  connectAs,
  loggedViolations,
  startUserWorker,
  type UserWorker,
} from "../helpers/permission-fleet.js";
import { NatsServer, testPrefix } from "../helpers/nats-server.js";
import { SPEC, eventually } from "../helpers/worker-harness.js";

const enc = new TextEncoder();

describe("least privilege: per-host worker and scheduler permissions", { timeout: 120_000 }, () => {
  const prefix = testPrefix();
  const n: Names = namesFor(prefix);
  const users: Record<string, { password: string; permissions?: NatsPermissions }> = {
    admin: { password: "admin-pw" },
    "worker-a": { password: "a-pw", permissions: workerPermissions(prefix, "A") },
    "worker-b": { password: "b-pw", permissions: workerPermissions(prefix, "B") },
    "worker-c": { password: "c-pw", permissions: workerPermissions(prefix, "C") },
    "worker-d": {
      password: "d-pw",
      permissions: workerPermissions(prefix, "D", { compaction: true }),
    },
    scheduler: { password: "s-pw", permissions: schedulerPermissions(prefix) },
    operator: { password: "o-pw", permissions: operatorPermissions(prefix) },
  };
  let dir: string;
  let logFile: string;
  let server: NatsServer;
  let scheduler: NatsConnection;
  let admin: NatsConnection;
  let jsm: JetStreamManager;
  let client: VmqClient;
  const workers: Worker[] = [];
  /** A connection as `user`; a worker's user gets its host's inbox prefix, as the worker does. */
  const as = (user: string, name: string, inboxPrefix?: string) =>
    connectAs(server.url, user, users[user]!.password, name, inboxPrefix);
  const startWorker = async (host: string, user: string, extra: UserWorker["extra"] = {}) => {
    const password = users[user]!.password;
    const w = await startUserWorker({ url: server.url, prefix, host, dir, user, password, extra });
    workers.push(w);
    return w;
  };
  /** Subscribing to `subject` as worker A is refused by the server (a permissions error). */
  const refusedSubscription = (subject: string): Promise<void> =>
    assertSubscriptionRefused(
      () => as("worker-a", "attacker-sub", workerInboxPrefix("A")),
      subject,
    );
  /** Permission violations the server logged, except those of the named connection. */
  const violations = (except = "attacker") => loggedViolations(logFile, (l) => !l.includes(except));

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "vmq-perm-"));
    logFile = join(dir, "nats.log");
    server = await NatsServer.start({
      config: [
        `log_file: ${JSON.stringify(logFile)}`,
        usersConfig(Object.entries(users).map(([user, u]) => ({ user, ...u }))),
      ].join("\n"),
    });
    admin = await as("admin", "admin");
    jsm = await jetstreamManager(admin);
    scheduler = await as("scheduler", "scheduler");
    client = new VmqClient(scheduler, { prefix, timeoutMs: 20_000 });
  });
  after(async () => {
    for (const w of workers) await w.drain().catch(() => undefined);
    await scheduler?.close();
    await admin?.close();
    await server?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it("workers provision, replay, run the whole lifecycle, answer queries, snapshot and drain with only their permissions", async () => {
    await startWorker("A", "worker-a");
    await startWorker("B", "worker-b");
    for (const host of ["A", "B"]) {
      const vmId = `vm-${host.toLowerCase()}`;
      for (const body of [
        { type: "vm.prepare", vmId, spec: SPEC },
        { type: "vm.start", vmId },
        { type: "vm.suspend", vmId },
        { type: "vm.resume", vmId },
        { type: "vm.stop", vmId, timeoutMs: 1000 },
      ] as const) {
        const r = await client.send(host, body);
        assert.notEqual(r.outcome.type, "vm.command-rejected", JSON.stringify(r.outcome));
        assert.notEqual(r.outcome.type, "vm.command-failed", JSON.stringify(r.outcome));
      }
      const q = await client.query(host, vmId, "state");
      assert.ok(q.ok);
    }
    // bad input: rejected and dead-lettered by A with A's permissions
    await client.js.publish(n.cmd("A", "junk"), enc.encode("not json"));
    const hosts = await client.hosts();
    assert.deepEqual(
      hosts.map((h) => h.host),
      ["A", "B"],
    );
    assert.equal((await client.list()).length, 2);
    // a prepare on B for A's vmId is refused (B reads the view of A's VM)
    const dupe = await client.send("B", { type: "vm.prepare", vmId: "vm-a", spec: SPEC });
    assert.equal(dupe.outcome.type, "vm.command-rejected");
    // drain (final snapshot, host record removed) and start again (replay from the snapshot)
    await workers.shift()!.drain();
    // a scheduler cancels a command queued for the stopped A, found by its commandId alone;
    // A reads the cancel (its own host's keys only) before it takes the command
    const { command: queued } = await client.publish("A", {
      type: "vm.destroy",
      vmId: "vm-a",
      timeoutMs: 1000,
    });
    const pending = await client.cancel(queued.commandId, { timeoutMs: 500 });
    assert.equal(pending.result, "pending");
    assert.equal(pending.host, "A");
    const again = await startWorker("A", "worker-a");
    assert.equal(again.state, "running");
    const cancelled = await client.waitForOutcome("A", "vm-a", queued.commandId);
    assert.equal(
      cancelled.outcome.type === "vm.command-rejected" && cancelled.outcome.code,
      "command::cancelled",
    );
    // and once more without snapshots: a full replay of A's events
    await workers.pop()!.drain();
    const full = await startWorker("A", "worker-a", { snapshots: "off" });
    assert.ok(full.stats.replayedEvents > 5, `replayed ${full.stats.replayedEvents} events`);
    const r = await client.send("A", { type: "vm.destroy", vmId: "vm-a", timeoutMs: 1000 });
    assert.equal(r.outcome.type, "vm.destroyed");
    for (let i = 0; i < 20 && (await jsm.streams.info(n.dlqStream)).state.messages < 1; i++)
      await new Promise((res) => setTimeout(res, 100));
    assert.equal((await jsm.streams.info(n.dlqStream)).state.messages, 1, "junk dead-lettered");
    assert.deepEqual(await violations(), [], "no permission violation by workers or scheduler");
  });

  it("host A's credentials cannot act for host B", async () => {
    // With A's own inbox prefix, so each refusal below is the server's, not a missing reply.
    const nc = await as("worker-a", "attacker", workerInboxPrefix("A"));
    const errors: string[] = [];
    void (async () => {
      for await (const s of nc.status()) if (s.type === "error") errors.push(String(s.error));
    })();
    const js = jetstream(nc, { timeout: 2_000 });
    // A's own request-reply works (so the refusals below mean something) ...
    assert.equal(
      (await (await jetstreamManager(nc, { timeout: 2_000 })).streams.info(n.eventsStream)).config
        .name,
      n.eventsStream,
      "A reads stream info through its own inbox",
    );
    const snoop = refusedSubscription;
    // ... while B's replies and everyone's default inboxes stay out of reach.
    await snoop(`${workerInboxPrefix("B")}.>`);
    await snoop("_INBOX.>");
    const attempts: [string, () => Promise<unknown>][] = [
      ["publish a command for B", () => js.publish(n.cmd("B", "vm-b"), enc.encode("{}"))],
      ["append an event for B", () => js.publish(n.evt("B", "vm-b"), enc.encode("{}"))],
      ["dead-letter for B", () => js.publish(n.dlq("B", "vm-b"), enc.encode("{}"))],
      ["publish a command even for A", () => js.publish(n.cmd("A", "vm-a"), enc.encode("{}"))],
      ["write B's host record", async () => (await new Kvm(nc).open(n.hostsBucket)).put("B", "{}")],
      [
        "write B's view record",
        async () => (await new Kvm(nc).open(n.vmsBucket)).put(n.viewKey("B", "vm-b"), "{}"),
      ],
      [
        "write a v1 (vmId-keyed) view record",
        async () => (await new Kvm(nc).open(n.vmsBucket)).put("vm-b", "{}"),
      ],
      ["take B's lease", async () => (await new Kvm(nc).open(n.leasesBucket)).put("B", "{}")],
      [
        "write a standby record for B",
        async () => (await new Kvm(nc).open(n.hostsBucket)).put("B.standby.x", "{}"),
      ],
      [
        "bind B's command consumer",
        async () => {
          const c = await js.consumers.get(n.commandsStream, n.durable("B"));
          return c.next({ expires: 1_000 });
        },
      ],
      [
        "pull from B's consumer directly",
        () =>
          nc.request(
            `$JS.API.CONSUMER.MSG.NEXT.${n.commandsStream}.${n.durable("B")}`,
            enc.encode(JSON.stringify({ batch: 1, expires: 500_000_000 })),
            { timeout: 2_000 },
          ),
      ],
      [
        "purge the events",
        async () => (await jetstreamManager(nc, { timeout: 2_000 })).streams.purge(n.eventsStream),
      ],
      [
        "delete the commands stream",
        async () =>
          (await jetstreamManager(nc, { timeout: 2_000 })).streams.delete(n.commandsStream),
      ],
      [
        "create a consumer on B's commands",
        async () =>
          (await jetstreamManager(nc, { timeout: 2_000 })).consumers.add(n.commandsStream, {
            durable_name: n.durable("A"),
            filter_subject: n.cmdFilter("B"),
          }),
      ],
    ];
    for (const [what, attempt] of attempts) {
      await assert.rejects(attempt(), `${what} must be refused`);
    }
    await nc.close();
    // the scheduler's credentials cannot append events or write views either
    const sc = await as("scheduler", "attacker-scheduler");
    const sjs = jetstream(sc, { timeout: 2_000 });
    await assert.rejects(sjs.publish(n.evt("A", "vm-a"), enc.encode("{}")), "scheduler: events");
    await assert.rejects(
      (async () => (await new Kvm(sc).open(n.vmsBucket)).put("vm-a", "{}"))(),
      "scheduler: views",
    );
    // nor fence a host: another host's lease is an operator's to write (vmq evacuate)
    await assert.rejects(
      (async () => (await new Kvm(sc).open(n.leasesBucket)).put("Z", "{}"))(),
      "scheduler: leases",
    );
    await sc.close();
    // nothing of it landed
    const cmdB = await jsm.streams.info(n.commandsStream, { subjects_filter: `${prefix}.cmd.>` });
    // (Every attempt above sent "{}"; no stream may hold one.)
    const forged = async (stream: string): Promise<string[]> => {
      const { state } = await jsm.streams.info(stream);
      const found: string[] = [];
      for (let seq = state.first_seq; state.messages > 0 && seq <= state.last_seq; seq++) {
        const m = await jsm.streams.getMessage(stream, { seq }).catch(() => null);
        if (m && m.data.length === 2 && m.string() === "{}") found.push(`${m.subject} #${seq}`);
      }
      return found;
    };
    for (const stream of [
      n.eventsStream,
      n.commandsStream,
      n.dlqStream,
      `KV_${n.vmsBucket}`,
      `KV_${n.leasesBucket}`,
      `KV_${n.hostsBucket}`,
    ])
      assert.deepEqual(await forged(stream), [], `no forged message landed in ${stream}`);
    const lastB = await jsm.streams.getMessage(n.eventsStream, {
      last_by_subj: n.evt("B", "vm-b"),
    });
    assert.ok(lastB, "B's VM has its history");
    // B's view record and lease are B's own, and a scheduler reads the VM on B
    assert.equal((await client.get("vm-b"))?.host, "B");
    const leaseB = await (await new Kvm(admin).open(n.leasesBucket)).get("B");
    assert.equal(leaseB?.operation, "PUT", "B holds its lease");
    assert.notEqual(leaseB?.string(), "{}");
    assert.notEqual(lastB.data.length, 2, "B's history does not end with the forged {}");
    assert.equal(cmdB.state.subjects?.[n.cmd("B", "vm-b")], 5, "only the scheduler's commands");
    const bConsumer = await jsm.consumers.info(n.commandsStream, n.durable("B"));
    assert.equal(bConsumer.config.filter_subject, n.cmdFilter("B"));
    const violationsSeen = await loggedViolations(logFile, (l) => l.includes("attacker"));
    assert.ok(violationsSeen.length >= attempts.length, violationsSeen.join("\n"));
  });

  it("host A cannot read any message of host B, by any API; its own reader reads only its own", async () => {
    // B has a command history, events and a dead letter of its own.
    const junk = await client.js.publish(n.cmd("B", "junk-b"), enc.encode("not json b"));
    await eventually(
      async () => (await jsm.streams.info(n.dlqStream)).state.messages >= 2 || undefined,
      15_000,
      "B's junk dead-lettered",
    );
    const lastCmdB = await jsm.streams.getMessage(n.commandsStream, {
      last_by_subj: n.cmd("B", "vm-b"),
    });
    const lastEvtB = await jsm.streams.getMessage(n.eventsStream, {
      last_by_subj: n.evt("B", "vm-b"),
    });
    const dlqB = await jsm.streams.getMessage(n.dlqStream, { last_by_subj: n.dlq("B", "junk-b") });
    assert.ok(lastCmdB && lastEvtB && dlqB);
    const name = "attacker-read";
    const nc = await as("worker-a", name, workerInboxPrefix("A"));
    const ajsm = await jetstreamManager(nc, { timeout: 2_000 });
    const ajs = jetstream(nc, { timeout: 2_000 });
    // A's own reader (the order gate's and the DLQ mover's path) reads A's command by sequence.
    const lastCmdA = await jsm.streams.getMessage(n.commandsStream, {
      last_by_subj: n.cmd("A", "vm-a"),
    });
    const reader = new CommandReader(ajs, ajsm, n.commandsStream, commandReaderName("A"));
    const own = await reader.at(n.cmdFilter("A"), lastCmdA!.seq);
    assert.equal(own?.subject, n.cmd("A", "vm-a"), "A reads its own command");
    // ... and nothing of B's: through the reader (its filter is A's), nor any other way.
    assert.equal(await reader.at(n.cmdFilter("A"), lastCmdB.seq), null, "B's seq is not A's");
    await reader.close();
    const req = (subject: string, body: unknown) =>
      nc.request(subject, enc.encode(JSON.stringify(body)), { timeout: 2_000 });
    const getBySeq = (stream: string, seq: number) => ajsm.streams.getMessage(stream, { seq });
    const createOn = (stream: string, consumer: string, filter: string) =>
      ajsm.consumers.add(stream, {
        name: consumer,
        filter_subject: filter,
        ack_policy: AckPolicy.None,
        inactive_threshold: 5_000_000_000,
      });
    const API = "$JS.API";
    const attempts: [string, RegExp, () => Promise<unknown>][] = [
      [
        "B's command by sequence",
        /MSG\.GET\.\w+_COMMANDS/,
        () => getBySeq(n.commandsStream, lastCmdB.seq),
      ],
      [
        "B's last command",
        /MSG\.GET\.\w+_COMMANDS/,
        () => ajsm.streams.getMessage(n.commandsStream, { last_by_subj: n.cmd("B", "vm-b") }),
      ],
      [
        "direct get of B's command by sequence",
        /DIRECT\.GET\.\w+_COMMANDS"/,
        () => req(`${API}.DIRECT.GET.${n.commandsStream}`, { seq: lastCmdB.seq }),
      ],
      [
        "direct get of B's last command",
        /DIRECT\.GET\.\w+_COMMANDS\./,
        () => req(`${API}.DIRECT.GET.${n.commandsStream}.${n.cmd("B", "vm-b")}`, {}),
      ],
      [
        "B's event by sequence",
        /MSG\.GET\.\w+_EVENTS/,
        () => getBySeq(n.eventsStream, lastEvtB.seq),
      ],
      [
        "direct get of B's event",
        /DIRECT\.GET\.\w+_EVENTS/,
        () => ajsm.direct.getMessage(n.eventsStream, { seq: lastEvtB.seq }),
      ],
      ["B's dead letter by sequence", /MSG\.GET\.\w+_DLQ/, () => getBySeq(n.dlqStream, dlqB.seq)],
      [
        "direct get of B's dead letter",
        /DIRECT\.GET\.\w+_DLQ/,
        () => req(`${API}.DIRECT.GET.${n.dlqStream}`, { seq: dlqB.seq }),
      ],
      [
        "A's reader filtered on B's commands",
        /CREATE\.\w+_COMMANDS\.reader-A\./,
        () => createOn(n.commandsStream, commandReaderName("A"), n.cmdFilter("B")),
      ],
      [
        "B's reader",
        /CREATE\.\w+_COMMANDS\.reader-B\./,
        () => createOn(n.commandsStream, commandReaderName("B"), n.cmdFilter("B")),
      ],
      [
        "a consumer on every host's commands",
        /CREATE\.\w+_COMMANDS\.peek\./,
        () => createOn(n.commandsStream, "peek", `${prefix}.cmd.>`),
      ],
      [
        "pull from B's reader",
        /MSG\.NEXT\.\w+_COMMANDS\.reader-B/,
        () =>
          req(`${API}.CONSUMER.MSG.NEXT.${n.commandsStream}.${commandReaderName("B")}`, {
            batch: 1,
          }),
      ],
      [
        "an ordered consumer on B's commands",
        /CREATE\.\w+_COMMANDS\./,
        async () => {
          const oc = await ajs.consumers.get(n.commandsStream, {
            filter_subjects: [n.cmdFilter("B")],
          });
          return oc.next({ expires: 1_000 });
        },
      ],
      [
        "a consumer on B's events",
        /CREATE\.\w+_EVENTS\.peek\./,
        () => createOn(n.eventsStream, "peek", n.evtFilter("B")),
      ],
      [
        "a consumer on B's dead letters",
        /CREATE\.\w+_DLQ\.peek/,
        () => createOn(n.dlqStream, "peek", `${prefix}.dlq.B.>`),
      ],
    ];
    for (const [what, , attempt] of attempts) await assert.rejects(attempt(), `${what} refused`);
    // Subscribing to B's subjects (commands as they are published, events, dead letters, the
    // advisories that name B's sequences) is refused too.
    for (const subject of [
      n.cmdFilter("B"),
      `${prefix}.cmd.>`,
      n.evtFilter("B"),
      `${prefix}.dlq.B.>`,
      "$JS.EVENT.ADVISORY.>",
      ">",
    ])
      await refusedSubscription(subject);
    // A stream update cannot add a republish of B's commands to A's inbox (2.9 refuses it).
    await assert.rejects(
      ajsm.streams.update(n.commandsStream, {
        republish: { src: n.cmdFilter("B"), dest: "_INBOX_A.steal.>" },
      }),
      /RePublish/,
    );
    await nc.close();
    const seen = await violations("nothing-excepted");
    for (const [what, pattern] of attempts)
      assert.ok(
        seen.some((l) => l.includes(name) && pattern.test(l)),
        `${what}: a permission violation in the server's log`,
      );
    assert.equal((await jsm.streams.info(n.commandsStream)).config.republish, undefined);
    assert.ok(junk.seq > 0);
  });

  it("compaction: without the purge right a worker forgets compacted VMs and leaves their events; with it, it purges them", async () => {
    const subjectCount = async (host: string, vmId: string) => {
      const subject = n.evt(host, vmId);
      const info = await jsm.streams.info(n.eventsStream, { subjects_filter: subject });
      return info.state.subjects?.[subject] ?? 0;
    };
    const compacting = { retentionMs: 200, compactIntervalMs: 1_000 };
    for (const [host, user, purges] of [
      ["C", "worker-c", false],
      ["D", "worker-d", true],
    ] as const) {
      const w = await startWorker(host, user, compacting);
      const vmId = `vm-${host.toLowerCase()}`;
      const first = await client.send(host, { type: "vm.prepare", vmId, spec: SPEC });
      await client.send(host, { type: "vm.destroy", vmId, timeoutMs: 1000 });
      await eventually(() => (w.registry?.has(vmId) ? undefined : true), 15_000, "forgotten");
      assert.equal(w.stats.purgeRefused > 0, !purges);
      assert.equal((await subjectCount(host, vmId)) > 0, !purges, `${host}: events purged?`);
      // The view record is dropped either way; its purge marker goes only with the right.
      const viewSubject = `$KV.${n.vmsBucket}.${n.viewKey(host, vmId)}`;
      const view = await jsm.streams.info(`KV_${n.vmsBucket}`, { subjects_filter: viewSubject });
      assert.equal(view.state.subjects?.[viewSubject] ?? 0, purges ? 0 : 1, `${host}: marker`);
      // Either way an old command has no second effect or outcome (the tombstone, or a reload).
      // Counted from before the publish: the worker may take it before the PubAck is read here.
      const before = w.stats.duplicates;
      const again = { type: "vm.prepare", version: 1, commandId: first.commandId, vmId };
      const issuedAt = new Date().toISOString();
      await client.js.publish(
        n.cmd(host, vmId),
        enc.encode(JSON.stringify({ ...again, issuedAt, spec: SPEC })),
      );
      await eventually(() => (w.stats.duplicates > before ? true : undefined), 15_000, "dupe");
    }
  });

  it("an operator may read and write any host's lease and view records (vmq evacuate)", async () => {
    const op = await as("operator", "operator");
    try {
      const leases = await new Kvm(op).open(n.leasesBucket);
      assert.ok((await leases.get("A"))?.value, "A's lease is readable");
      const rev = await leases.create("Z", "{}");
      await leases.delete("Z", { previousSeq: rev });
      const vms = await new Kvm(op).open(n.vmsBucket);
      await vms.purge("Z.vm-z");
    } finally {
      await op.close();
    }
  });
});
