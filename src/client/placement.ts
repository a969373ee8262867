import type { BackendTag, HostRecord } from "../contracts/index.js";

export interface PlacementRequest {
  /** The backend the VM needs (default: any; the host's default backend is then used). */
  backend?: BackendTag;
  /** Capabilities the backend must offer. */
  needs?: { suspend?: boolean; uefi?: boolean; console?: boolean };
  /** Host labels that must match exactly (e.g. { zone: "a" }). */
  labels?: Record<string, string>;
  /** fewest-vms (default) spreads VMs; least-busy prefers hosts with fewer in-flight commands. */
  strategy?: "fewest-vms" | "least-busy";
  /** A host whose last heartbeat is older than this is never chosen (default 30 s). */
  maxHeartbeatAgeMs?: number;
  /** Hosts to leave out (e.g. draining for maintenance). */
  exclude?: string[];
}

export interface Placement {
  host: string;
  backend: BackendTag;
}

/**
 * Chooses a host for a new VM from live host records: backend and capability match, label
 * constraints, then the fewest VMs (or in-flight commands); ties go to the host name so
 * concurrent schedulers agree. Pure: pass `now` and the records.
 */
export function choosePlacement(
  hosts: HostRecord[],
  req: PlacementRequest = {},
  now = Date.now(),
): Placement | undefined {
  const maxAge = req.maxHeartbeatAgeMs ?? 30_000;
  const candidates = hosts
    .filter((h) => h.state === "running" && now - Date.parse(h.heartbeatAt) <= maxAge)
    .filter((h) => !req.exclude?.includes(h.host))
    .filter((h) => Object.entries(req.labels ?? {}).every(([k, v]) => h.labels[k] === v))
    .map((h) => ({ h, backend: req.backend ?? h.defaultBackend }))
    .filter(({ h, backend }) => {
      const caps = h.capabilities[backend];
      if (!h.backends.includes(backend) || !caps) return false;
      if (req.needs?.suspend && !caps.suspend) return false;
      if (req.needs?.uefi && !caps.uefi) return false;
      if (req.needs?.console && caps.console === "none") return false;
      return true;
    });
  const load = (h: HostRecord) => (req.strategy === "least-busy" ? h.inFlight : h.vmCount);
  candidates.sort((a, b) => load(a.h) - load(b.h) || a.h.host.localeCompare(b.h.host));
  const best = candidates[0];
  return best ? { host: best.h.host, backend: best.backend } : undefined;
}

/**
 * Placement for a scheduler that places many VMs in a row: host records change only on
 * heartbeats and lag behind the prepares in flight, so the placer adds its own placements of
 * the last `memoryMs` to them. Concurrent callers share one refresh of the host records.
 */
export class Placer {
  #hosts: HostRecord[] = [];
  #fetchedAt = 0;
  #refreshing: Promise<void> | undefined;
  readonly #recent: { host: string; at: number }[] = [];

  constructor(
    private readonly fetchHosts: () => Promise<HostRecord[]>,
    private readonly refreshMs = 1_000,
    private readonly memoryMs = 10_000,
  ) {}

  async place(req: PlacementRequest = {}): Promise<Placement | undefined> {
    if (Date.now() - this.#fetchedAt > this.refreshMs) {
      this.#refreshing ??= this.fetchHosts()
        .then((h) => {
          this.#hosts = h;
          this.#fetchedAt = Date.now();
        })
        .finally(() => (this.#refreshing = undefined));
      await this.#refreshing;
    }
    const now = Date.now();
    while (this.#recent.length > 0 && now - (this.#recent[0]?.at ?? now) > this.memoryMs)
      this.#recent.shift();
    const mine = new Map<string, number>();
    for (const r of this.#recent) mine.set(r.host, (mine.get(r.host) ?? 0) + 1);
    const adjusted = this.#hosts.map((h) => ({
      ...h,
      vmCount: h.vmCount + (mine.get(h.host) ?? 0),
      inFlight: h.inFlight + (mine.get(h.host) ?? 0),
    }));
    const p = choosePlacement(adjusted, req, now);
    if (p) this.#recent.push({ host: p.host, at: now });
    return p;
  }
}
