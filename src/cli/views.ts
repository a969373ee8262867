import type { HostRecord, VmView } from "../contracts/index.js";
import { age, paint, table, toneOf, type Tone } from "./output.js";

/** The VM's own version (its event count), or "-" for a record written before it existed. */
export const vmVersion = (v: VmView): string =>
  v.eventCount === undefined ? "-" : String(v.eventCount);

const pendingText = (v: VmView): string | undefined =>
  v.pending ? `${v.pending.type}` : undefined;

export const VM_HEADERS = {
  table: ["VMID", "HOST", "STATE", "VERSION", "PENDING", "AGE"],
  wide: [
    "VMID",
    "HOST",
    "STATE",
    "VERSION",
    "SEQ",
    "BACKEND",
    "VCPUS",
    "MEMORY",
    "PENDING",
    "COMMAND",
    "UPDATED",
    "AGE",
  ],
};

type Cell = string | number | undefined | null | { text: string; tone?: Tone | undefined };

/** One VM as a table row (AGE: since its last event). */
export function vmRow(v: VmView, wide: boolean, now = Date.now()): Cell[] {
  const state = { text: v.state, tone: toneOf(v.state) };
  if (!wide) return [v.vmId, v.host, state, vmVersion(v), pendingText(v), age(v.updatedAt, now)];
  return [
    v.vmId,
    v.host,
    state,
    vmVersion(v),
    v.lastEventSeq,
    v.handle?.backend,
    v.handle?.vcpus,
    v.handle ? `${v.handle.memoryMb}Mi` : undefined,
    pendingText(v),
    v.pending?.commandId,
    v.updatedAt,
    age(v.updatedAt, now),
  ];
}

/**
 * Column widths while watching: each change is printed as its own row, so the columns are wide
 * enough for common values from the start (a longer value only shifts its own line).
 */
export const WATCH_WIDTHS = {
  table: [16, 10, 10, 7, 11, 4],
  wide: [16, 10, 10, 7, 6, 8, 5, 7, 11, 36, 24, 4],
};

export function vmTable(
  vms: VmView[],
  wide = false,
  colour = false,
  now = Date.now(),
  minWidths: readonly number[] = [],
): string {
  return table(
    wide ? VM_HEADERS.wide : VM_HEADERS.table,
    vms.map((v) => vmRow(v, wide, now)),
    colour,
    minWidths,
  );
}

/** A host's heartbeat age in seconds (how long since it last beat). */
export const heartbeatAgeS = (h: HostRecord, now = Date.now()): number =>
  Math.max(0, Math.round((now - Date.parse(h.heartbeatAt)) / 1000));

export function hostTable(
  hosts: HostRecord[],
  wide = false,
  colour = false,
  now = Date.now(),
): string {
  const labels = (h: HostRecord) =>
    Object.entries(h.labels)
      .map(([k, v]) => `${k}=${v}`)
      .join(",") || undefined;
  return table(
    wide
      ? [
          "HOST",
          "ROLE",
          "STATE",
          "VERSION",
          "BACKENDS",
          "VMS",
          "IN-FLIGHT",
          "HEARTBEAT",
          "AGE",
          "LABELS",
        ]
      : ["HOST", "ROLE", "STATE", "VERSION", "BACKENDS", "VMS", "IN-FLIGHT", "HEARTBEAT", "LABELS"],
    hosts.map((h) => [
      h.host,
      h.role,
      { text: h.state, tone: toneOf(h.state) },
      h.version,
      h.backends.join(","),
      h.vmCount,
      h.inFlight,
      ...(wide ? [h.heartbeatAt, age(h.heartbeatAt, now)] : [age(h.heartbeatAt, now)]),
      labels(h),
    ]),
    colour,
  );
}

/** `key: value` lines for one VM (vmq get). */
export function describeVm(v: VmView, colour = false, now = Date.now()): string {
  const rows: [string, string | number | undefined][] = [
    ["vmId", v.vmId],
    ["host", v.host],
    ["state", paint(colour, toneOf(v.state), v.state)],
    ["version", vmVersion(v)],
    ["lastEventSeq", v.lastEventSeq],
    ["updated", `${v.updatedAt} (${age(v.updatedAt, now)} ago)`],
    [
      "pending",
      v.pending
        ? `${v.pending.type} (command ${v.pending.commandId}) since ${v.pending.since}, deadline ${v.pending.deadline}`
        : "none",
    ],
  ];
  if (v.handle) {
    const h = v.handle;
    rows.push(
      ["name", h.name],
      ["backend", h.backend],
      ["vcpus", h.vcpus],
      ["memoryMb", h.memoryMb],
      ["diskGb", h.diskGb],
      ["network", h.network.type],
      ["workDir", h.workDir],
      ["pid", h.pid],
      ["propolisAddr", h.propolisAddr],
      ["sshHostPort", h.sshHostPort],
    );
  }
  const shown = rows.filter(([, x]) => x !== undefined);
  const w = Math.max(...shown.map(([k]) => k.length));
  return shown.map(([k, x]) => `${`${k}:`.padEnd(w + 2)}${String(x)}\n`).join("");
}
