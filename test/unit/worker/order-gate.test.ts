/**
 * The order gate on its own, over a scripted command log and a mocked clock: the window of
 * what another worker may still hold (opened, merged, closed by the ack floor or its time
 * limit), what earlier() reads back from the stream and what it remembers, the commands this
 * process sent back, and the one-time run-ahead of a held command.
 * (test/integration/order-gate.test.ts runs it against a real nats-server.)
 */
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it, mock } from "node:test";
import { Command } from "../../../src/contracts/index.js";
import {
  OrderGate,
  type CommandLog,
  type StoredCommand,
} from "../../../src/worker/pipeline/order-gate.js";

const enc = new TextEncoder();
const dec = new TextDecoder();
const subject = (vmId: string) => `vmq.cmd.h1.${vmId}`;
const cmd = (vmId: string, commandId: string): Command =>
  Command.parse({
    type: "vm.start",
    version: 1,
    commandId,
    vmId,
    issuedAt: "2026-11-25T10:00:00Z",
  });

type Position = { ackFloor: number; delivered: number };

/** A command stream and a consumer position, with every request the gate makes recorded. */
class ScriptedLog implements CommandLog {
  readonly messages: StoredCommand[] = [];
  /** Answers to position(), in order; the last one repeats. */
  positions: (Position | Promise<Position>)[] = [{ ackFloor: 0, delivered: 0 }];
  positionCalls = 0;
  readonly nextCalls: [string, number][] = [];

  add(seq: number, vmId: string, body: Command | string): void {
    const data = enc.encode(typeof body === "string" ? body : JSON.stringify(body));
    this.messages.push({ seq, subject: subject(vmId), data });
    this.messages.sort((a, b) => a.seq - b.seq);
  }
  position(): Promise<Position> {
    this.positionCalls++;
    const p = this.positions.length > 1 ? this.positions.shift() : this.positions[0];
    return Promise.resolve(p ?? { ackFloor: 0, delivered: 0 });
  }
  next(s: string, fromSeq: number): Promise<StoredCommand | null> {
    this.nextCalls.push([s, fromSeq]);
    return Promise.resolve(this.messages.find((m) => m.subject === s && m.seq >= fromSeq) ?? null);
  }
}

function gate(maxOpenMs = 600_000) {
  const log = new ScriptedLog();
  const parse = (data: Uint8Array): Command | undefined => {
    try {
      const r = Command.safeParse(JSON.parse(dec.decode(data)) as unknown);
      return r.success ? r.data : undefined;
    } catch {
      return undefined; // bad input is never reordered
    }
  };
  return { log, g: new OrderGate(log, (d) => parse(d), maxOpenMs) };
}

const seqs = (cs: { seq: number }[]) => cs.map((c) => c.seq);
const kinds = (cs: { kind: string; seq: number }[]) => cs.map((c) => `${c.kind}:${c.seq}`);

beforeEach(() => mock.timers.enable({ apis: ["Date"], now: 1_000_000 }));
afterEach(() => mock.timers.reset());

describe("the window of what another worker may hold", () => {
  it("stays closed when the consumer has nothing unacknowledged", async () => {
    const { log, g } = gate();
    log.positions = [{ ackFloor: 5, delivered: 5 }];
    assert.equal(await g.open(), undefined);
    assert.equal(g.windowOpen, false);
    assert.equal(g.mayHaveEarlier("a"), false, "steady state: no lookup");
  });

  it("opens on the unacknowledged range, and a reopening widens it", async () => {
    const { log, g } = gate();
    log.positions = [
      { ackFloor: 3, delivered: 7 },
      { ackFloor: 5, delivered: 10 },
    ];
    assert.deepEqual(await g.open(), { from: 4, to: 7 });
    assert.equal(g.windowOpen, true);
    assert.equal(g.mayHaveEarlier("any"), true);
    assert.deepEqual(await g.open(), { from: 4, to: 10 });
  });

  it("a reopening with nothing new keeps the window as it was", async () => {
    const { log, g } = gate();
    log.positions = [
      { ackFloor: 3, delivered: 7 },
      { ackFloor: 7, delivered: 7 },
    ];
    await g.open();
    assert.deepEqual(await g.open(), { from: 4, to: 7 });
  });
});

describe("earlier: what is ahead of a command", () => {
  it("reads the VM's valid commands without an outcome inside the window, oldest first", async () => {
    const { log, g } = gate();
    log.add(4, "x", cmd("x", "A"));
    log.add(5, "x", "{not a command");
    log.add(6, "x", cmd("x", "B"));
    log.add(7, "x", cmd("x", "C"));
    log.add(8, "x", cmd("x", "D"));
    log.positions = [{ ackFloor: 3, delivered: 7 }];
    await g.open();
    const ahead = await g.earlier("x", subject("x"), 9, new Set(["B"]));
    assert.deepEqual(kinds(ahead), ["held:4", "held:7"]);
    assert.deepEqual(
      ahead.map((c) => c.command.commandId),
      ["A", "C"],
    );
    assert.equal(ahead[0]?.subject, subject("x"));
    assert.deepEqual(
      log.nextCalls.map(([, from]) => from),
      [4, 5, 6, 7, 8],
      "one read per message, up to the first past the window",
    );
  });

  it("only what comes before the command itself", async () => {
    const { log, g } = gate();
    log.add(4, "x", cmd("x", "A"));
    log.add(6, "x", cmd("x", "B"));
    log.positions = [{ ackFloor: 3, delivered: 7 }];
    await g.open();
    assert.deepEqual(seqs(await g.earlier("x", subject("x"), 6, new Set())), [4]);
    assert.deepEqual(seqs(await g.earlier("x", subject("x"), 4, new Set())), []);
  });

  it("nothing is read back without a window, or past it", async () => {
    const { log, g } = gate();
    log.add(4, "x", cmd("x", "A"));
    assert.deepEqual(await g.earlier("x", subject("x"), 9, new Set()), []);
    assert.equal(log.nextCalls.length, 0);
  });

  it("a VM found clean is not read again until the window reopens; one with a held command is", async () => {
    const { log, g } = gate();
    log.add(4, "held", cmd("held", "A"));
    log.positions = [
      { ackFloor: 3, delivered: 7 },
      { ackFloor: 3, delivered: 8 },
    ];
    await g.open();
    await g.earlier("clean", subject("clean"), 9, new Set());
    await g.earlier("clean", subject("clean"), 10, new Set());
    assert.equal(log.nextCalls.filter(([s]) => s === subject("clean")).length, 1);
    await g.earlier("held", subject("held"), 9, new Set());
    await g.earlier("held", subject("held"), 9, new Set());
    assert.equal(log.nextCalls.filter(([s]) => s === subject("held")).length, 4);
    await g.open(); // after a reconnect: everything may have changed
    await g.earlier("clean", subject("clean"), 9, new Set());
    assert.equal(log.nextCalls.filter(([s]) => s === subject("clean")).length, 2);
  });
});

describe("commands this process sent back", () => {
  it("hold the VM's later commands until they are settled or have an outcome", async () => {
    const { g } = gate();
    g.defer({ seq: 6, subject: subject("x"), data: new Uint8Array(), command: cmd("x", "A") });
    g.defer({ seq: 9, subject: subject("x"), data: new Uint8Array(), command: cmd("x", "B") });
    assert.equal(g.waiting, 2);
    assert.equal(g.mayHaveEarlier("x"), true);
    assert.equal(g.mayHaveEarlier("y"), false);
    assert.deepEqual(kinds(await g.earlier("x", subject("x"), 8, new Set())), ["deferred:6"]);
    // A has its outcome now (recorded by another delivery): it no longer holds anything.
    assert.deepEqual(kinds(await g.earlier("x", subject("x"), 10, new Set(["A"]))), ["deferred:9"]);
    assert.equal(g.waiting, 1);
    assert.deepEqual(await g.earlier("x", subject("x"), 10, new Set(["B"])), []);
    assert.equal(g.waiting, 0);
    assert.equal(g.mayHaveEarlier("x"), false, "off the slow path once nothing waits");
  });

  it("forget settles one; the VM leaves the slow path with its last", () => {
    const { g } = gate();
    g.defer({ seq: 6, subject: subject("x"), data: new Uint8Array(), command: cmd("x", "A") });
    g.defer({ seq: 7, subject: subject("x"), data: new Uint8Array(), command: cmd("x", "B") });
    g.forget("x", 99);
    assert.equal(g.waiting, 2);
    g.forget("x", 6);
    assert.equal(g.mayHaveEarlier("x"), true);
    g.forget("x", 7);
    assert.equal(g.waiting, 0);
    assert.equal(g.mayHaveEarlier("x"), false);
  });

  it("come out in stream order with the held ones", async () => {
    const { log, g } = gate();
    log.add(4, "x", cmd("x", "A"));
    log.positions = [{ ackFloor: 3, delivered: 5 }];
    await g.open();
    g.defer({
      seq: 5,
      subject: subject("x"),
      data: new Uint8Array(),
      command: cmd("x", "B"),
      retryAt: 123,
    });
    const ahead = await g.earlier("x", subject("x"), 8, new Set());
    assert.deepEqual(kinds(ahead), ["held:4", "deferred:5"]);
    assert.equal(ahead[1]?.retryAt, 123);
  });
});

describe("closing the window", () => {
  async function opened(maxOpenMs?: number) {
    const t = gate(maxOpenMs);
    t.log.positions = [{ ackFloor: 3, delivered: 7 }];
    await t.g.open();
    t.log.positionCalls = 0;
    return t;
  }

  it("asks for the ack floor at most every two seconds, and closes once it passed the window", async () => {
    const { log, g } = await opened();
    log.positions = [{ ackFloor: 6, delivered: 9 }];
    await g.earlier("x", subject("x"), 9, new Set());
    assert.equal(log.positionCalls, 0, "just opened: not asked");
    mock.timers.tick(2_000);
    await g.earlier("x", subject("x"), 9, new Set());
    assert.equal(log.positionCalls, 1);
    assert.equal(g.windowOpen, true, "the floor (6) has not passed the window (7)");
    mock.timers.tick(1_999);
    await g.earlier("x", subject("x"), 9, new Set());
    assert.equal(log.positionCalls, 1, "asked less than two seconds ago");
    mock.timers.tick(1);
    log.positions = [{ ackFloor: 7, delivered: 9 }];
    await g.earlier("x", subject("x"), 9, new Set());
    assert.equal(log.positionCalls, 2);
    assert.equal(g.windowOpen, false);
    assert.equal(g.mayHaveEarlier("x"), false);
  });

  it("one question at a time, however many commands ask", async () => {
    const { log, g } = await opened();
    let answer: (p: Position) => void = () => {};
    log.positions = [new Promise<Position>((r) => (answer = r)), { ackFloor: 3, delivered: 7 }];
    mock.timers.tick(2_000);
    const both = Promise.all([
      g.earlier("x", subject("x"), 9, new Set()),
      g.earlier("y", subject("y"), 9, new Set()),
    ]);
    answer({ ackFloor: 3, delivered: 7 });
    await both;
    assert.equal(log.positionCalls, 1);
    mock.timers.tick(2_000);
    await g.earlier("x", subject("x"), 9, new Set());
    assert.equal(log.positionCalls, 2, "and asked again at the next check");
  });

  it("a failed question leaves the window open, to be asked again", async () => {
    const { log, g } = await opened();
    log.positions = [Promise.reject(new Error("NATS away")), { ackFloor: 9, delivered: 9 }];
    mock.timers.tick(2_000);
    assert.deepEqual(await g.earlier("x", subject("x"), 9, new Set()), []);
    assert.equal(g.windowOpen, true);
  });

  it("an answer about a window that was reopened meanwhile does not close the new one", async () => {
    const { log, g } = await opened();
    let answer: (p: Position) => void = () => {};
    log.positions = [new Promise<Position>((r) => (answer = r)), { ackFloor: 7, delivered: 12 }];
    mock.timers.tick(2_000);
    const asking = g.earlier("x", subject("x"), 9, new Set());
    await g.open(); // a reconnect: a new window up to 12
    answer({ ackFloor: 7, delivered: 12 });
    await asking;
    assert.equal(g.windowOpen, true);
  });

  it("closes when its time is up even if the floor is stuck, and held commands may run ahead again", async () => {
    const { log, g } = await opened(10_000);
    assert.equal(g.firstTry(4), true);
    assert.equal(g.firstTry(4), false, "a held command runs ahead once");
    mock.timers.tick(10_000);
    await g.earlier("x", subject("x"), 9, new Set());
    assert.equal(g.windowOpen, true, "not yet past its time");
    mock.timers.tick(2_000); // the next check
    log.positions = [{ ackFloor: 3, delivered: 7 }];
    log.positionCalls = 0;
    await g.earlier("x", subject("x"), 9, new Set());
    assert.equal(g.windowOpen, false);
    assert.equal(log.positionCalls, 0, "closed without asking");
    assert.equal(g.firstTry(4), true, "a new window starts afresh");
  });
});
