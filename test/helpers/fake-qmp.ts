/**
 * A fake QMP peer on a unix socket for QmpClient tests: greets, accepts qmp_capabilities,
 * answers commands from a script (replies, error replies, silence), emits events and can
 * drop its connections or go away and come back.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

export type FakeReply =
  | { return: unknown }
  | { error: { class: string; desc: string } }
  /** Never answers (to test timeouts). */
  | "silence";

export interface FakeQmpOptions {
  /** Send the QMP greeting on connect (default true). */
  greet?: boolean;
}

export class FakeQmp {
  readonly path: string;
  readonly dir: string;
  /** Every command received after capabilities negotiation, in order. */
  readonly received: { execute: string; arguments?: unknown }[] = [];
  /** How many connections completed the handshake. */
  handshakes = 0;
  readonly #script = new Map<string, (args: unknown) => FakeReply>();
  readonly #clients = new Set<Socket>();
  #server: Server | undefined;
  readonly #opts: FakeQmpOptions;

  private constructor(dir: string, opts: FakeQmpOptions) {
    this.dir = dir;
    this.path = join(dir, "qmp.sock");
    this.#opts = opts;
  }

  static async start(opts: FakeQmpOptions = {}): Promise<FakeQmp> {
    const f = new FakeQmp(await mkdtemp(join(tmpdir(), "vmq-fakeqmp-")), opts);
    await f.listen();
    return f;
  }

  /** Scripts the reply to a command (default: `{ return: {} }`). */
  on(command: string, reply: FakeReply | ((args: unknown) => FakeReply)): void {
    this.#script.set(command, typeof reply === "function" ? reply : () => reply);
  }

  /** Sends an event to every connected client. */
  emit(event: string, data?: Record<string, unknown>): void {
    const line = JSON.stringify({
      event,
      ...(data ? { data } : {}),
      timestamp: { seconds: Math.floor(Date.now() / 1000), microseconds: 0 },
    });
    for (const c of this.#clients) c.write(`${line}\n`);
  }

  get connections(): number {
    return this.#clients.size;
  }

  /** Drops every client connection (the server keeps listening). */
  dropConnections(): void {
    for (const c of this.#clients) c.destroy();
    this.#clients.clear();
  }

  /** Stops listening and drops clients (as if QEMU died); listen() brings it back. */
  async goAway(): Promise<void> {
    this.dropConnections();
    const s = this.#server;
    this.#server = undefined;
    if (s) await new Promise<void>((res) => s.close(() => res()));
    await rm(this.path, { force: true });
  }

  async listen(): Promise<void> {
    await rm(this.path, { force: true });
    const server = createServer((sock) => this.#serve(sock));
    await new Promise<void>((res, rej) => {
      server.once("error", rej);
      server.listen(this.path, () => res());
    });
    this.#server = server;
  }

  async stop(): Promise<void> {
    await this.goAway();
    await rm(this.dir, { recursive: true, force: true });
  }

  #serve(sock: Socket): void {
    this.#clients.add(sock);
    sock.on("close", () => this.#clients.delete(sock));
    sock.on("error", () => undefined);
    sock.setEncoding("utf8");
    if (this.#opts.greet ?? true) {
      sock.write(
        `${JSON.stringify({ QMP: { version: { qemu: { major: 7, minor: 2, micro: 0 } }, capabilities: [] } })}\n`,
      );
    }
    let negotiated = false;
    let buf = "";
    sock.on("data", (chunk: string) => {
      buf += chunk;
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (!line) continue;
        const msg = JSON.parse(line) as { execute: string; arguments?: unknown; id?: unknown };
        const id = msg.id === undefined ? {} : { id: msg.id };
        if (!negotiated) {
          if (msg.execute !== "qmp_capabilities") {
            sock.write(
              `${JSON.stringify({ error: { class: "CommandNotFound", desc: "capabilities first" }, ...id })}\n`,
            );
            continue;
          }
          negotiated = true;
          this.handshakes++;
          sock.write(`${JSON.stringify({ return: {}, ...id })}\n`);
          continue;
        }
        this.received.push({
          execute: msg.execute,
          ...(msg.arguments === undefined ? {} : { arguments: msg.arguments }),
        });
        const reply = this.#script.get(msg.execute)?.(msg.arguments) ?? { return: {} };
        if (reply === "silence") continue;
        sock.write(`${JSON.stringify({ ...reply, ...id })}\n`);
      }
    });
  }
}
