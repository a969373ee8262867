import type { Command } from "@commander-js/extra-typings";
import { jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { HostRecord, type Names } from "../../contracts/index.js";
import { toVmqError } from "../../lib/errors.js";
import { connectNats } from "../../worker/nats/connect.js";
import { EXIT, addConnectionFlags, connectionSettings, intOption } from "../connection.js";
import { colourOn, formatOf, isMachine, machine, outputOption, paint, toneOf } from "../output.js";
import { names as namesFor } from "../../contracts/index.js";
import { VmqClient } from "../../client/index.js";

/** One line of `vmq check`: ok, warn (works, but look), or problem (exit 1). */
export interface CheckResult {
  check: string;
  status: "ok" | "warn" | "problem";
  detail: string;
  fix?: string;
}

const DEFAULTS = { maxSkewMs: 2_000, staleMs: 15_000 };

/** vmq check: is this NATS ready for vmq, and are its hosts alive and on time? */
export function registerCheck(program: Command): void {
  addConnectionFlags(
    program
      .command("check")
      .description(
        "Check the connection, the provisioning (streams, buckets), the hosts' heartbeats and their clock skew; exit 0 all good, 1 a problem",
      )
      .option(
        "--max-skew-ms <ms>",
        `warn when a clock differs by more than this (default ${DEFAULTS.maxSkewMs})`,
        intOption("--max-skew-ms"),
      )
      .option(
        "--stale-ms <ms>",
        `flag a host whose last heartbeat is older than this (default ${DEFAULTS.staleMs})`,
        intOption("--stale-ms"),
      )
      .addOption(outputOption(["table", "json", "yaml"]))
      .addHelpText(
        "after",
        "\nExamples:\n  vmq check\n  vmq check --context prod -o json\n  vmq check --max-skew-ms 500 && echo ready\n",
      ),
  ).action(async (flags) => {
    const { config } = await connectionSettings(flags);
    const results: CheckResult[] = [];
    let nc: NatsConnection | undefined;
    try {
      const t0 = Date.now();
      nc = await connectNats(config, "vmq-check");
      const rtt = await nc.rtt();
      results.push({
        check: "connection",
        status: "ok",
        detail: `${config.nats ?? "nats://127.0.0.1:4222"}: nats-server ${nc.info?.version ?? "?"}, rtt ${rtt} ms, connected in ${Date.now() - t0} ms`,
      });
      const n = namesFor(config.prefix);
      const jsm = await jetstreamManager(nc);
      const provisioned = await provisioning(jsm, n);
      results.push(provisioned);
      if (provisioned.status !== "problem")
        results.push(...(await hostChecks(nc, jsm, n, { ...DEFAULTS, ...definedOf(flags) })));
    } catch (e) {
      const err = toVmqError(e, "nats::unreachable");
      results.push({
        check: results.length === 0 ? "connection" : "read",
        status: "problem",
        detail: `${err.message} [${err.code}]`,
        fix: err.hint ?? "Pass --nats (or VMQ_NATS_URL, or a context) and your credentials flags.",
      });
    } finally {
      await nc?.drain().catch(() => nc?.close());
    }
    const format = formatOf(flags);
    const ok = results.every((r) => r.status !== "problem");
    if (isMachine(format)) process.stdout.write(machine(format, { ok, checks: results }));
    else process.stdout.write(checkLines(results, colourOn()));
    process.exitCode = ok ? EXIT.ok : EXIT.failed;
  });
}

const definedOf = (f: { maxSkewMs?: number; staleMs?: number }) => ({
  ...(f.maxSkewMs === undefined ? {} : { maxSkewMs: f.maxSkewMs }),
  ...(f.staleMs === undefined ? {} : { staleMs: f.staleMs }),
});

/** `ok    connection  nats-server 2.9.10, rtt 1 ms` and, for a problem, `  fix: ...`. */
export function checkLines(results: CheckResult[], colour = false): string {
  const w = Math.max(...results.map((r) => r.check.length));
  return results
    .map((r) => {
      const status = paint(colour, toneOf(r.status), r.status.padEnd(7));
      const fix = r.fix && r.status !== "ok" ? ` — fix: ${r.fix}` : "";
      return `${status} ${r.check.padEnd(w)}  ${r.detail}${fix}\n`;
    })
    .join("");
}

async function provisioning(jsm: JetStreamManager, n: Names): Promise<CheckResult> {
  const streams = [n.commandsStream, n.eventsStream, n.dlqStream];
  const buckets = [
    n.vmsBucket,
    n.hostsBucket,
    n.snapshotsBucket,
    n.tombstonesBucket,
    n.leasesBucket,
    n.cancelsBucket,
  ];
  const missing: string[] = [];
  for (const s of [...streams, ...buckets.map((b) => `KV_${b}`)])
    await jsm.streams.info(s).catch(() => missing.push(s));
  if (missing.length === 0)
    return {
      check: "provisioning",
      status: "ok",
      detail: `prefix ${n.prefix}: streams ${streams.join(", ")} and buckets ${buckets.join(", ")} present`,
    };
  return {
    check: "provisioning",
    status: "problem",
    detail: `prefix ${n.prefix}: missing ${missing.join(", ")}`,
    fix: `start a worker on this NATS with the same prefix (vmq worker --nats <url> --prefix ${n.prefix} --host <id>; workers create them), or provision them as docs/wire-contract.md#provisioning-what-an-administrator-creates says`,
  };
}

/**
 * Per host: its heartbeat's age (stale past `staleMs`), and two clocks against the NATS server's:
 * the host's (heartbeatAt against the time the server stored the record) and this machine's
 * (a stored time in the future, or far older than the heartbeat age allows). Hosts that still
 * hold VMs in the view but have no live record have expired.
 */
async function hostChecks(
  nc: NatsConnection,
  jsm: JetStreamManager,
  n: Names,
  limits: { maxSkewMs: number; staleMs: number },
): Promise<CheckResult[]> {
  const stream = `KV_${n.hostsBucket}`;
  const prefix = `$KV.${n.hostsBucket}.`;
  const info = await jsm.streams.info(stream, { subjects_filter: `${prefix}>` });
  const out: CheckResult[] = [];
  const alive = new Set<string>();
  const now = Date.now();
  let newest = 0;
  for (const subject of Object.keys(info.state.subjects ?? {}).sort()) {
    const m = await jsm.streams.getMessage(stream, { last_by_subj: subject }).catch(() => null);
    if (!m || ["DEL", "PURGE"].includes(m.header?.get("KV-Operation") ?? "")) continue;
    let rec: HostRecord | undefined;
    try {
      rec = HostRecord.parse(JSON.parse(new TextDecoder().decode(m.data)));
    } catch {
      out.push({
        check: `host ${subject.slice(prefix.length)}`,
        status: "warn",
        detail: "unreadable record",
      });
      continue;
    }
    alive.add(rec.host);
    const stored = m.time.getTime();
    const beat = Date.parse(rec.heartbeatAt);
    const ageMs = now - beat;
    const hostSkew = beat - stored; // host clock minus server clock, plus the publish latency
    const stale = ageMs > limits.staleMs;
    out.push({
      check: `host ${rec.host}`,
      status: stale ? "problem" : "ok",
      detail: `${rec.state}, last heartbeat ${(ageMs / 1000).toFixed(1)} s ago, ${rec.vmCount} VM(s), vmq ${rec.version}`,
      ...(stale
        ? {
            fix: `its worker has stopped beating: check the worker of ${rec.host} (its logs, vmq worker)`,
          }
        : {}),
    });
    newest = Math.max(newest, stored);
    const skewed = Math.abs(hostSkew) > limits.maxSkewMs;
    out.push({
      check: `clock ${rec.host}`,
      status: skewed ? "warn" : "ok",
      detail: `host clock ${signed(hostSkew)} ms from the NATS server's (threshold ${limits.maxSkewMs} ms)`,
      ...(skewed ? { fix: NTP } : {}),
    });
  }
  if (newest > 0) {
    // The newest record was stored at most a heartbeat ago: by this machine's clock it must be
    // neither in the future nor much older than that.
    const seen = now - newest;
    const off = seen < -limits.maxSkewMs || seen > limits.staleMs + limits.maxSkewMs;
    out.push({
      check: "clock local",
      status: off ? "warn" : "ok",
      detail: `the newest heartbeat was stored ${signed(seen)} ms ago by this machine's clock (expected 0 to ${limits.staleMs} ms, threshold ${limits.maxSkewMs} ms)`,
      ...(off ? { fix: NTP } : {}),
    });
  }
  const views = await new VmqClient(nc, { prefix: n.prefix }).list();
  const orphaned = new Map<string, number>();
  for (const v of views)
    if (!alive.has(v.host) && v.state !== "destroyed")
      orphaned.set(v.host, (orphaned.get(v.host) ?? 0) + 1);
  for (const [host, count] of orphaned)
    out.push({
      check: `host ${host}`,
      status: "problem",
      detail: `expired: no heartbeat within the registry's TTL, yet ${count} live VM(s) in the view`,
      fix: `start the worker of ${host} again (the VMs are re-adopted), or destroy its VMs`,
    });
  if (alive.size === 0 && orphaned.size === 0)
    out.push({
      check: "hosts",
      status: "warn",
      detail: "no host is heartbeating under this prefix",
      fix: "start a worker: vmq worker --nats <url> --host <id>",
    });
  return out;
}

const NTP =
  "run NTP (chrony, systemd-timesyncd) on the hosts and here: deadlines and ages rely on the clocks";
const signed = (n: number): string => (n >= 0 ? `+${Math.round(n)}` : `${Math.round(n)}`);
