/** Whether a figure stayed flat over a run: how far later points went from the first. */

/** Largest relative departure of later points from the first (0.2 = 20%; Infinity from 0). */
export function departure<K extends string>(points: readonly Record<K, number>[], key: K): number {
  const first = points[0]?.[key];
  if (first === undefined || points.length < 2) return Number.NaN;
  let worst = 0;
  for (const p of points.slice(1)) {
    const d = Math.abs(p[key] - first);
    // From nothing, any growth is unbounded in relative terms.
    worst = Math.max(worst, first === 0 ? (d === 0 ? 0 : Infinity) : d / Math.abs(first));
  }
  return worst;
}
