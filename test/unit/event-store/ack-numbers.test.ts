/**
 * The batch replay reads the stream sequence, consumer sequence and pending count from each
 * message's reply subject: from the client's bytes when it keeps them, else from the string;
 * both ways agree, and a field that is not a plain number reads as NaN (the replay then stops).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { Msg } from "@nats-io/transport-node";
import { ackNumbers } from "../../../src/event-store/batch-replay.js";

const enc = new TextEncoder();
const asBytes = (reply: string): Msg => ({ _msg: { reply: enc.encode(reply) } }) as unknown as Msg;
const asString = (reply: string): Msg => ({ reply }) as unknown as Msg;
const read = (m: Msg): number[] => [...ackNumbers(m, [0, 0, 0])];

describe("ackNumbers", () => {
  it("reads stream seq, consumer seq and pending from both forms alike", () => {
    for (let i = 0; i < 500; i++) {
      const seq = Math.floor(Math.random() * 2 ** 40);
      const cseq = Math.floor(Math.random() * 1e9);
      const pending = i % 7 === 0 ? 0 : Math.floor(Math.random() * 1e6);
      const reply = `$JS.ACK.VMQ_EVENTS.rp-0a1b2c3d4e5f.1.${seq}.${cseq}.1796456618073000000.${pending}`;
      assert.deepEqual(read(asBytes(reply)), [seq, cseq, pending]);
      assert.deepEqual(read(asString(reply)), [seq, cseq, pending]);
    }
  });

  it("gives NaN for what is not a plain decimal number, or a subject too short", () => {
    for (const reply of [
      "$JS.ACK.S.c.1.12x.3.99.0",
      "$JS.ACK.S.c.1.-12.3.99.0",
      "$JS.ACK.S.c.1.1e3.3.99.0",
      "$JS.ACK.S.c.1.1234567890123456.3.99.0",
      "$JS.ACK.S.c.1..3.99.0",
    ]) {
      assert.ok(Number.isNaN(read(asBytes(reply))[0]), reply);
      assert.ok(Number.isNaN(read(asString(reply))[0]), reply);
    }
    for (const reply of ["", "3.99.0", "x"]) {
      assert.ok(read(asBytes(reply)).every(Number.isNaN), reply);
      assert.ok(Number.isNaN(read(asString(reply))[0]), reply);
    }
  });
});
