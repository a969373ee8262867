#!/usr/bin/env node
// The compose file's one-shot demo scheduler: waits for a live host, then drives one VM through
// prepare, start, suspend, resume, stop, destroy with the client SDK, printing each outcome.
import { connect } from "@nats-io/transport-node";
import { VmqClient } from "../dist/client/index.js";

const servers = (process.env.VMQ_NATS_URL ?? "nats://127.0.0.1:4222").split(",");
const nc = await connect({ servers, maxReconnectAttempts: -1 });
const client = new VmqClient(nc, { prefix: process.env.VMQ_PREFIX ?? "vmq" });
for (let i = 0; i < 60 && (await client.hosts().catch(() => [])).length === 0; i++) {
  await new Promise((r) => setTimeout(r, 1_000));
}
const vmId = `demo-${Date.now().toString(36)}`;
const spec = {
  name: "demo",
  imagePath: process.env.DEMO_IMAGE ?? "/var/lib/vmq/images/base.qcow2",
  vcpus: 1,
  memoryMb: 256,
};
// start, suspend, ... find the VM's host by reading the view: the SDK reads its own writes, so
// each step sees the one before even when the view is written a moment after the outcome.
const show = (r) => {
  console.log(
    `${r.outcome.type.padEnd(22)} state=${r.outcome.state} host=${r.outcome.host} seq=${r.outcomeSeq}`,
  );
  if (r.outcome.type === "vm.command-rejected" || r.outcome.type === "vm.command-failed") {
    console.error(`${r.outcome.code}: ${r.outcome.message}`);
    process.exit(1);
  }
};
show(await client.prepare(vmId, spec));
for (const step of ["start", "suspend", "resume", "stop", "destroy"])
  show(await client[step](vmId));
await nc.close();
