import { InMemoryEventStore } from "../../src/event-store/in-memory-event-store.js";
import { eventStoreConformance } from "./event-store.conformance.js";

eventStoreConformance("in-memory", () => Promise.resolve({ store: new InMemoryEventStore() }));
