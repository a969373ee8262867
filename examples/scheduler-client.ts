/**
 * A scheduler written against the vmq SDK: connect, let placement choose a host and prepare a
 * VM there, start it, follow its events, stop it and destroy it.
 *
 *   npx tsx examples/scheduler-client.ts [nats-url] [prefix]
 *
 * Needs a running worker (e.g. `npm start` in another terminal, which offers the Noop backend).
 * In your own code import from "vmq" instead of "../src/client/index.js".
 */
import { connect } from "@nats-io/transport-node";
import { VmqClient, isVmqError, type SendResult } from "../src/client/index.js";

const url = process.argv[2] ?? process.env.VMQ_NATS_URL ?? "nats://127.0.0.1:4222";
const prefix = process.argv[3] ?? process.env.VMQ_PREFIX ?? "vmq";
const vmId = `example-${Date.now().toString(36)}`;

const nc = await connect({ servers: url, name: "vmq-example-scheduler" });
const client = new VmqClient(nc, { prefix, timeoutMs: 60_000 });

/** An outcome is either the transition asked for, or a rejection/failure with a stable code. */
function check(step: string, r: SendResult): void {
  const o = r.outcome;
  if (o.type === "vm.command-rejected" || o.type === "vm.command-failed")
    throw new Error(`${step}: ${o.type} ${o.code}: ${o.message}`);
  console.log(`${step}: ${o.type} -> ${o.state} (version ${r.outcomeSeq})`);
}

// Follow the VM's events in the background while the commands run.
const watching = new AbortController();
const follower = (async () => {
  for await (const { event, seq } of client.watch({ vmId }, { signal: watching.signal }))
    console.log(`  event ${seq}: ${event.type} (${event.state})`);
})();

try {
  const hosts = await client.hosts();
  console.log(`live hosts: ${hosts.map((h) => `${h.host} [${h.backends.join(",")}]`).join(", ")}`);

  // No host given: placement picks a live host that offers the backend (fewest VMs first).
  const prepared = await client.prepare(
    vmId,
    { name: vmId, backend: "noop", imagePath: "/images/base.qcow2", vcpus: 1, memoryMb: 256 },
    { correlationId: "example-deploy" },
  );
  check("prepare", prepared);
  const host = prepared.outcome.host;

  const started = await client.start(vmId, { host });
  check("start", started);
  // expectedVersion: act only if nobody else moved the VM since the version we saw.
  check(
    "stop",
    await client.stop(vmId, {
      host,
      stopTimeoutMs: 10_000,
      force: "after-timeout",
      expectedVersion: started.outcomeSeq,
    }),
  );
  check("destroy", await client.destroy(vmId, { host }));
} catch (e) {
  console.error(isVmqError(e) ? `${e.code}: ${e.message} (${e.hint ?? "no hint"})` : e);
  process.exitCode = 1;
} finally {
  // Give the follower a moment to print the last events, then stop it.
  await new Promise((r) => setTimeout(r, 500));
  watching.abort();
  await follower.catch(() => undefined);
  await nc.close();
}
