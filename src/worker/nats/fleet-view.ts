import type { KV } from "@nats-io/kv";
import { VmView } from "../../contracts/index.js";
import type { FleetView } from "../ports.js";

/** The `vmq-vms` bucket as the pipeline reads it; `refresh` rewrites a record through the projector. */
export function kvFleetView(vms: KV, host: string, refresh: (vmId: string) => void): FleetView {
  return {
    refresh,
    ownerElsewhere: async (vmId) => {
      try {
        const entry = await vms.get(vmId);
        if (!entry || entry.operation !== "PUT") return undefined;
        const view = VmView.safeParse(entry.json());
        if (view.success && view.data.host !== host && view.data.state !== "destroyed")
          return view.data.host;
      } catch {
        /* the view is advisory; the event stream decides for this host */
      }
      return undefined;
    },
  };
}

/** Drops the VM's record from the view, when it is this host's (another may hold the vmId now). */
export async function dropOwnRecord(vms: KV, host: string, vmId: string): Promise<void> {
  const entry = await vms.get(vmId);
  if (!entry || entry.operation !== "PUT") return;
  const view = VmView.safeParse(entry.json());
  if (view.success && view.data.host === host) await vms.purge(vmId);
}
