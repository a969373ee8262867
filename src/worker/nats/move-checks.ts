import type { KV } from "@nats-io/kv";
import { FINAL_MOVE_STEPS, MoveRecord } from "../../contracts/index.js";
import type { MoveChecks } from "../ports.js";

/**
 * Reads a VM's record in `<prefix>-moves` (keyed by vmId) when a start must know whether the
 * move that exported its disk is still under way. Only such starts ask, so nothing else pays a
 * round trip. A failed read throws: the command is redelivered rather than decided unsure.
 */
export function kvMoveChecks(moves: Pick<KV, "get">): MoveChecks {
  return {
    async underWay(vmId, moveId) {
      const e = await moves.get(vmId);
      if (e?.operation !== "PUT") return false;
      const r = MoveRecord.safeParse(e.json());
      // An unreadable record is no proof the move is over: starts stay refused until one is.
      if (!r.success) return true;
      return r.data.id === moveId && !FINAL_MOVE_STEPS.has(r.data.step);
    },
  };
}
