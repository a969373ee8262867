import { openSync, readFileSync } from "node:fs";
import { jetstreamManager } from "@nats-io/jetstream";
import { NatsServer } from "./test/helpers/nats-server.js";
import { recoveryHistory, recoveryHandle } from "./scripts/bench/recovery-data.js";
import { Worker, NoopBackend, HypervisorRouter, createLogger } from "./scripts/bench/built.js";
import { provisionVmq } from "./scripts/bench/vmq.js";
import { namesFor } from "./scripts/bench/common.js";
const server = await NatsServer.start(); const nc = await server.connect();
const names = namesFor("ph"); await provisionVmq(nc, names, ["r1"]);
const enc = new TextEncoder(); let seq = 0; let n = 0;
for (let i = 0; i < 10000; i++) { for (const e of recoveryHistory("r1", i, () => ++seq)) { nc.publish(names.evt("r1", e.vmId), enc.encode(JSON.stringify(e))); n++; } if (i % 500 === 499) await nc.flush(); }
await nc.flush(); const jsm = await jetstreamManager(nc);
while ((await jsm.streams.info(names.eventsStream)).state.messages < n) await new Promise((r) => setTimeout(r, 100));
for (let k = 0; k < 3; k++) {
const noop = new NoopBackend(); for (let i = 0; i < 10000; i++) noop.seed(recoveryHandle(i), "stopped");
const file = `/tmp/phase-${k}.log`;
const log = createLogger({ level: "debug", destination: openSync(file, "w") });
const T0 = Date.now();
const w = new Worker({ nats: server.url, prefix: "ph", host: "r1", dataDir: `/tmp/ph-${k}`, reconcileIntervalMs: 0, snapshots: "off", concurrency: 16 }, { router: new HypervisorRouter([noop]), logger: log });
await w.start(); const done = Date.now() - T0;
await new Promise((r) => setTimeout(r, 300));
const marks = [];
for (const l of readFileSync(file, "utf8").split("\n").filter(Boolean)) { const o = JSON.parse(l); if (/replayed|reconciled|cancels|running/.test(o.msg)) marks.push(`${o.msg.split(" ")[0]}@${o.time - T0}`); }
console.log(`run ${k}: ${marks.join(" ")} done@${done}`);
await w.drain();
}
await nc.close(); await server.stop();
