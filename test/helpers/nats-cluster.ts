import { createServer } from "node:net";
import { NatsServer } from "./nats-server.js";

/** A free loopback port (closed again at once; fine for a test's own processes). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const a = s.address();
      s.close(() => (typeof a === "object" && a ? resolve(a.port) : reject(new Error("no port"))));
    });
  });
}

/** Three nats-server -js processes routed into one JetStream cluster on loopback. */
export class NatsCluster {
  private constructor(readonly nodes: { name: string; server: NatsServer }[]) {}

  static async start(size = 3): Promise<NatsCluster> {
    const clientPorts = await Promise.all(Array.from({ length: size }, freePort));
    const routePorts = await Promise.all(Array.from({ length: size }, freePort));
    const nodes = await Promise.all(
      clientPorts.map(async (port, i) => {
        const name = `n${i + 1}`;
        const routes = routePorts
          .filter((_, j) => j !== i)
          .map((p) => `"nats-route://127.0.0.1:${p}"`);
        const config = [
          `server_name: ${name}`,
          `cluster { name: vmqtest, listen: "127.0.0.1:${routePorts[i]}", routes: [${routes.join(", ")}] }`,
        ].join("\n");
        return { name, server: await NatsServer.start({ port, config }) };
      }),
    );
    return new NatsCluster(nodes);
  }

  get urls(): string {
    return this.nodes.map((n) => n.server.url).join(",");
  }

  node(name: string): NatsServer {
    const n = this.nodes.find((x) => x.name === name);
    if (!n) throw new Error(`no node ${name}`);
    return n.server;
  }

  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.server.stop()));
  }
}
