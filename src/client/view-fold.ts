import type { JetStreamManager } from "@nats-io/jetstream";
import { upcastEvent, type Names, type VmView } from "../contracts/index.js";
import { emptyVm, evolve, toView, type Vm } from "../domain/index.js";
import { jsonOf } from "./wire.js";

/** Beyond this many events past the view, the fold gives up (the view is then returned as is). */
const MAX_FOLDED = 1_000;

/**
 * A VM's view when the `vmq-vms` record lags: the record (or nothing) with the VM's own events
 * after it folded on top by the worker's own `evolve`, read one by one by direct get (a lagging
 * view is behind by a few events, so this is a few requests). The result is the record the
 * worker writes next, or undefined when the VM has no lifecycle (only rejections).
 */
export async function foldedView(
  jsm: JetStreamManager,
  names: Names,
  host: string,
  vmId: string,
  from: VmView | undefined,
): Promise<VmView | undefined> {
  // Records of another host are another life of the vmId: fold this host's from the start.
  let vm = from && from.host === host ? vmOf(from) : emptyVm(vmId, host);
  const subject = names.evt(host, vmId);
  for (let n = 0; n < MAX_FOLDED; n++) {
    const m = await jsm.direct.getMessage(names.eventsStream, {
      next_by_subj: subject,
      seq: vm.version + 1,
    });
    if (!m) break;
    const parsed = upcastEvent(jsonOf(m.data));
    // An event this client cannot read: the view (from a newer worker) is the better answer.
    if (!parsed.ok) return from;
    vm = evolve(vm, parsed.event, m.seq);
  }
  const view = toView(vm);
  // A record from a worker that did not count events: the fold cannot know the count either.
  if (view && from && from.host === host && from.eventCount === undefined) {
    const { eventCount: _unknown, ...rest } = view;
    return rest;
  }
  return view;
}

/** The newest event of a VM under any host: where it lives and how far its history goes. */
export async function newestEventOf(
  jsm: JetStreamManager,
  names: Names,
  vmId: string,
): Promise<{ host: string; seq: number } | undefined> {
  const m = await jsm.direct.getMessage(names.eventsStream, {
    last_by_subj: names.evt("*", vmId),
  });
  if (!m) return undefined;
  const host = m.subject.split(".").at(-2);
  return host ? { host, seq: m.seq } : undefined;
}

/** The fields evolve reads, from a view record (what the view leaves out, evolve does not use). */
const vmOf = (v: VmView): Vm => ({
  ...emptyVm(v.vmId, v.host),
  state: v.state,
  handle: v.handle,
  pending: v.pending,
  version: v.lastEventSeq,
  // The events before the record are counted there; the fold adds the ones it reads.
  eventCount: v.eventCount ?? 0,
  updatedAt: v.updatedAt,
});
