/** The EventStore conformance suite against the JetStream store on a real nats-server. */
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { names as namesFor } from "../../src/contracts/index.js";
import { JetStreamEventStore } from "../../src/event-store/jetstream-event-store.js";
import { ensureTopology } from "../../src/event-store/provision.js";
import { NatsServer, testPrefix } from "../helpers/nats-server.js";
import { eventStoreConformance } from "./event-store.conformance.js";

for (const via of ["push", "fetch"] as const)
  eventStoreConformance(`jetstream (replay by ${via})`, async () => {
    const server = await NatsServer.start();
    const nc = await server.connect();
    const names = namesFor(testPrefix());
    await ensureTopology(nc, await jetstreamManager(nc), names);
    return {
      store: new JetStreamEventStore(jetstream(nc), names, { connection: nc, replayVia: via }),
      cleanup: async () => {
        await nc.close();
        await server.stop();
      },
    };
  });
