import { isValidId } from "./ids.js";
import { VmView } from "./vm.js";

/** The view's key format: v2 is `<host>.<vmId>`, v1 (before the host lease) the vmId alone. */
export const VIEW_KEY_VERSION = 2;

/**
 * A `vmq-vms` record read under `key`, or undefined when it is not a record or not the key's
 * own: a v2 record must name the key's host and vmId (a worker may write only keys of its own
 * host, so a record claiming another host is forged); a v1 record (key = vmId) is read as it
 * was written, its host from the record (the upcast of old views).
 */
export function viewRecordAt(key: string, value: unknown): VmView | undefined {
  const parsed = VmView.safeParse(value);
  if (!parsed.success) return undefined;
  const v = parsed.data;
  const dot = key.indexOf(".");
  if (dot < 0) return isValidId(key) && v.vmId === key ? v : undefined;
  return key.slice(0, dot) === v.host && key.slice(dot + 1) === v.vmId ? v : undefined;
}

/** Of several records of one vmId (one per host, a v1 leftover), the one that speaks for it. */
export function currentView(records: readonly { key: string; view: VmView }[]): VmView | undefined {
  // Host-keyed records win over v1 leftovers; a live record over destroyed ones (a moved VM's
  // source is destroyed after its target runs it, so its record is the newer one); among
  // those the latest write of the view.
  const v2 = records.filter((r) => r.key.includes("."));
  const keyed = v2.length ? v2 : records;
  const live = keyed.filter((r) => r.view.state !== "destroyed");
  const pool = live.length ? live : keyed;
  let best: VmView | undefined;
  for (const { view } of pool)
    if (!best || Date.parse(view.updatedAt) > Date.parse(best.updatedAt)) best = view;
  return best;
}
