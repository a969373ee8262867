import { existsSync } from "node:fs";
import { cpus, loadavg, totalmem } from "node:os";
import { execa } from "execa";
import { findNatsServer } from "../../test/helpers/nats-server.js";

/** The q-quantile (0..1) of `values` by the nearest-rank method; NaN when empty. */
export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil(q * sorted.length)));
  return sorted[rank - 1] ?? Number.NaN;
}

export interface LatencySummary {
  count: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
}

export function summarize(values: readonly number[]): LatencySummary {
  const mean = values.length ? values.reduce((a, b) => a + b, 0) / values.length : Number.NaN;
  return {
    count: values.length,
    p50: quantile(values, 0.5),
    p90: quantile(values, 0.9),
    p99: quantile(values, 0.99),
    max: values.length ? Math.max(...values) : Number.NaN,
    mean,
  };
}

export const round = (n: number, digits = 0): number => {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
};

export const loadAverage = (): [number, number, number] => {
  const [a = 0, b = 0, c = 0] = loadavg();
  return [round(a, 2), round(b, 2), round(c, 2)];
};

export interface MachineFacts {
  date: string;
  cores: number;
  cpuModel: string;
  memoryGiB: number;
  node: string;
  natsServer: string;
  kvm: boolean;
  loadAverageAtStart: [number, number, number];
  platform: string;
}

export async function machineFacts(): Promise<MachineFacts> {
  const bin = await findNatsServer();
  const { stdout } = await execa(bin, ["--version"]);
  return {
    date: new Date().toISOString(),
    cores: cpus().length,
    cpuModel: cpus()[0]?.model ?? "unknown",
    memoryGiB: round(totalmem() / 2 ** 30, 1),
    node: process.version,
    natsServer: stdout.trim().replace(/^nats-server:\s*/, ""),
    kvm: existsSync("/dev/kvm"),
    loadAverageAtStart: loadAverage(),
    platform: `${process.platform} ${process.arch}`,
  };
}

/** Parses an RFC 3339 time with up to nanosecond fractions into epoch milliseconds (fractional). */
export function parseNanoTime(s: string): number {
  const m = /^(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$/.exec(s);
  if (!m) return Date.parse(s);
  const whole = Date.parse(`${m[1]}${m[3]}`);
  const frac = m[2] ? Number(`0.${m[2]}`) * 1000 : 0;
  return whole + frac;
}

/** The machine's busy share of all its cores over `ms` (0..1), from the kernel's CPU times. */
export async function busyShare(ms = 1_000): Promise<number> {
  const total = () =>
    cpus().reduce(
      (a, c) => {
        const t = c.times;
        return { idle: a.idle + t.idle, all: a.all + t.idle + t.user + t.nice + t.sys + t.irq };
      },
      { idle: 0, all: 0 },
    );
  const a = total();
  await new Promise((r) => setTimeout(r, ms));
  const b = total();
  const all = b.all - a.all;
  return all > 0 ? 1 - (b.idle - a.idle) / all : 0;
}

/**
 * Waits (up to `maxMs`) until the machine is nearly idle for a whole second: a section that
 * starts while the last one's processes still exit or flush measures them too.
 */
export async function settle(maxMs = 30_000): Promise<number> {
  const t0 = performance.now();
  while (performance.now() - t0 < maxMs) if ((await busyShare()) < 0.1) break;
  return Math.round(performance.now() - t0);
}
