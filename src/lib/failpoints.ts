/**
 * Crash points for fault tests: VMQ_FAILPOINTS="after-intent=0.05,in-backend=0.05" makes the
 * process SIGKILL itself at those steps with that probability. Unset (always, in production),
 * every check is one Map lookup on an empty map.
 */
export type Failpoint =
  "before-intent" | "after-intent" | "in-backend" | "after-outcome" | "before-ack";

const points = new Map<string, number>(
  (process.env.VMQ_FAILPOINTS ?? "")
    .split(",")
    .map((s) => s.trim().split("="))
    .filter((kv): kv is [string, string] => kv.length === 2 && kv[0] !== "")
    .map(([k, v]) => [k, Number(v)]),
);

export function failpoint(name: Failpoint): void {
  const p = points.get(name);
  if (p !== undefined && Math.random() < p) process.kill(process.pid, "SIGKILL");
}
