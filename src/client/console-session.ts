import type { NatsConnection, Subscription } from "@nats-io/transport-node";

/** One console session: bytes from the VM as an async iterator, write() to type, close() to end. */
export class ConsoleSession {
  readonly #sub: Subscription;
  readonly #closedSub: Subscription;
  readonly #ping: NodeJS.Timeout;
  /** Why the worker ended the session, once it has. */
  closedReason: string | undefined;

  constructor(
    private readonly nc: NatsConnection,
    readonly subject: string,
  ) {
    this.#sub = nc.subscribe(`${subject}.out`);
    this.#closedSub = nc.subscribe(`${subject}.closed`, {
      callback: (_e, m) => {
        this.closedReason = m.string();
        this.#sub.unsubscribe();
      },
    });
    this.#ping = setInterval(() => nc.publish(`${subject}.ping`), 5_000);
    this.#ping.unref();
  }

  write(data: Uint8Array | string): void {
    this.nc.publish(
      `${this.subject}.in`,
      typeof data === "string" ? new TextEncoder().encode(data) : data,
    );
  }

  async *output(): AsyncGenerator<Uint8Array> {
    for await (const m of this.#sub) yield m.data;
  }

  close(): void {
    clearInterval(this.#ping);
    this.nc.publish(`${this.subject}.close`);
    this.#sub.unsubscribe();
    this.#closedSub.unsubscribe();
  }
}
