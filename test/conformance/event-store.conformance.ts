/**
 * The suite every EventStore must pass (the in-memory one and the JetStream one): the
 * expected-sequence check per VM, an eventId appended at most once, replay of a host from a
 * sequence, and an abort that stops a replay. Each store's *.test.ts calls eventStoreConformance().
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { VmEvent } from "../../src/contracts/index.js";
import type { EventStore, StoredEvent } from "../../src/event-store/event-store.js";
import { isVmqError } from "../../src/lib/errors.js";

export interface EventStoreFixture {
  store: EventStore;
  cleanup?: () => Promise<void>;
}

let n = 0;
/** A valid event of a VM (an observation: it needs no command). */
export function eventOf(
  host: string,
  vmId: string,
  state: "running" | "stopped" = "running",
): VmEvent {
  n++;
  return {
    type: "vm.state-observed",
    version: 1,
    eventId: `${vmId}:obs:${n}-${Math.random().toString(36).slice(2)}`,
    vmId,
    host,
    at: new Date(Date.UTC(2026, 0, 1, 0, 0, n % 60)).toISOString(),
    causationId: null,
    correlationId: null,
    state,
    observed: state,
    previous: "unknown",
    source: "reconcile",
  };
}

async function expectConflict(p: Promise<unknown>, actual: number): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(isVmqError(e, "event-store::conflict"), `expected a conflict, got ${String(e)}`);
    assert.equal(e.details?.actual, actual, "the conflict names the VM's actual last sequence");
    return true;
  });
}

export function eventStoreConformance(name: string, make: () => Promise<EventStoreFixture>): void {
  describe(`EventStore conformance: ${name}`, () => {
    let fx: EventStoreFixture;
    let host: string;
    let hosts = 0;
    before(async () => {
      fx = await make();
    });
    after(async () => fx.cleanup?.());
    // Each case gets hosts of its own: the stores are shared by the cases.
    const nextHost = (): string => `${name.replace(/\W/g, "")}h${++hosts}`;

    it("appends to a new VM at 0 and returns increasing sequences; readVm gives the history", async () => {
      host = nextHost();
      const a = await fx.store.append(eventOf(host, "v1"), 0);
      const b = await fx.store.append(eventOf(host, "v1"), a);
      assert.ok(a > 0 && b > a, `sequences increase (${a}, ${b})`);
      const history = await fx.store.readVm(host, "v1");
      assert.deepEqual(
        history.map((e) => e.seq),
        [a, b],
      );
      assert.equal(history[0]?.event.vmId, "v1");
    });

    it("refuses an append whose expected sequence is not the VM's last (event-store::conflict)", async () => {
      host = nextHost();
      const a = await fx.store.append(eventOf(host, "v1"), 0);
      await expectConflict(fx.store.append(eventOf(host, "v1"), 0), a);
      await expectConflict(fx.store.append(eventOf(host, "v1"), a + 1000), a);
      const fresh = await fx.store.readVm(host, "v2");
      assert.deepEqual(fresh, [], "a VM with no events has an empty history");
      await expectConflict(fx.store.append(eventOf(host, "v2"), a), 0);
      assert.equal((await fx.store.readVm(host, "v1")).length, 1, "nothing was appended");
    });

    it("checks the expectation per VM: other VMs' appends in between do not conflict", async () => {
      host = nextHost();
      const a = await fx.store.append(eventOf(host, "v1"), 0);
      await fx.store.append(eventOf(host, "v2"), 0);
      await fx.store.append(eventOf(host, "v3"), 0);
      const b = await fx.store.append(eventOf(host, "v1"), a);
      assert.ok(b > a);
    });

    it("refuses an eventId it holds already as a conflict (the caller's VM was stale), adding nothing", async () => {
      host = nextHost();
      const e = eventOf(host, "v1");
      const a = await fx.store.append(e, 0);
      for (const expected of [0, a]) {
        await assert.rejects(fx.store.append(e, expected), (err: unknown) => {
          assert.ok(isVmqError(err, "event-store::conflict"), String(err));
          assert.equal(err.details?.duplicate, true);
          return true;
        });
      }
      assert.equal((await fx.store.readVm(host, "v1")).length, 1);
    });

    it("replays a host's events in order, from a sequence on, and no other host's", async () => {
      host = nextHost();
      const other = nextHost();
      const seqs: number[] = [];
      let last = 0;
      for (let i = 0; i < 3; i++) {
        last = await fx.store.append(eventOf(host, "v1"), last);
        seqs.push(last);
        await fx.store.append(eventOf(other, `o${i}`), 0);
      }
      const seen: StoredEvent[] = [];
      const all = await fx.store.replay(host, 0, (e) => seen.push(e));
      assert.deepEqual(
        seen.map((e) => e.seq),
        seqs,
      );
      assert.ok(seen.every((e) => e.event.host === host));
      assert.deepEqual(all, { lastSeq: seqs[2], count: 3 });

      const later: number[] = [];
      const from = await fx.store.replay(host, seqs[0] ?? 0, (e) => later.push(e.seq));
      assert.deepEqual(later, seqs.slice(1));
      assert.deepEqual(from, { lastSeq: seqs[2], count: 2 });

      const none = await fx.store.replay(host, seqs[2] ?? 0, () =>
        assert.fail("nothing is after the last"),
      );
      assert.deepEqual(none, { lastSeq: seqs[2], count: 0 });

      const everyone: StoredEvent[] = [];
      await fx.store.replay("*", (seqs[0] ?? 1) - 1, (e) => everyone.push(e));
      assert.ok(
        everyone.some((e) => e.event.host === other),
        "'*' replays every host",
      );
    });

    it("purges a VM's events by their sequences: exactly those through the bound, again harmlessly", async () => {
      host = nextHost();
      const a1 = await fx.store.append(eventOf(host, "v1"), 0);
      const b1 = await fx.store.append(eventOf(host, "v2"), 0);
      const a2 = await fx.store.append(eventOf(host, "v1"), a1);
      const a3 = await fx.store.append(eventOf(host, "v1"), a2);
      assert.equal(await fx.store.purgeVm(host, "v1", a2, [a1, a2, a3]), 2, "a3 is past the bound");
      assert.deepEqual(
        (await fx.store.readVm(host, "v1")).map((e) => e.seq),
        [a3],
      );
      assert.equal(await fx.store.purgeVm(host, "v1", a3, [a1, a2, a3]), 1, "gone ones count 0");
      assert.deepEqual(await fx.store.readVm(host, "v1"), []);
      assert.deepEqual(
        (await fx.store.readVm(host, "v2")).map((e) => e.seq),
        [b1],
        "another VM's events stay",
      );
    });

    it("purges a VM's events through a sequence: later ones and other VMs stay; an emptied subject starts again at 0", async () => {
      host = nextHost();
      const a1 = await fx.store.append(eventOf(host, "v1"), 0);
      const a2 = await fx.store.append(eventOf(host, "v1"), a1);
      const b1 = await fx.store.append(eventOf(host, "v2"), 0);
      const a3 = await fx.store.append(eventOf(host, "v1"), a2);
      assert.equal(await fx.store.purgeVm(host, "v1", a2), 2);
      assert.deepEqual(
        (await fx.store.readVm(host, "v1")).map((e) => e.seq),
        [a3],
      );
      const replayed: number[] = [];
      await fx.store.replay(host, 0, (e) => replayed.push(e.seq));
      assert.deepEqual(replayed, [b1, a3], "the purged events are gone from a replay too");
      assert.equal(await fx.store.purgeVm(host, "v1", a3), 1);
      assert.deepEqual(await fx.store.readVm(host, "v1"), []);
      assert.equal(await fx.store.purgeVm(host, "v1", a3), 0, "purging again is harmless");
      const again = await fx.store.append(eventOf(host, "v1"), 0);
      assert.ok(again > a3, "a new life appends at 0 and gets a new sequence");
      assert.deepEqual(
        (await fx.store.readVm(host, "v2")).map((e) => e.seq),
        [b1],
      );
    });

    it("stops a replay when its signal aborts, with the signal's reason, applying nothing after", async () => {
      host = nextHost();
      let last = 0;
      for (let i = 0; i < 5; i++) last = await fx.store.append(eventOf(host, `v${i}`), 0);
      assert.ok(last > 0);
      const stop = new AbortController();
      const reason = new Error("stop asked for");
      let seen = 0;
      await assert.rejects(
        fx.store.replay(
          host,
          0,
          () => {
            if (++seen === 2) stop.abort(reason);
          },
          stop.signal,
        ),
        (e) => e === reason,
      );
      assert.equal(seen, 2, "no event is applied after the abort");
      const already = new AbortController();
      already.abort(reason);
      let any = 0;
      await assert.rejects(
        fx.store.replay(host, 0, () => any++, already.signal),
        (e) => e === reason,
      );
      assert.equal(any, 0, "an aborted signal applies nothing");
    });
  });
}
