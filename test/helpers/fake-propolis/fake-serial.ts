/**
 * The fake propolis-server's serial console: a bounded byte buffer with absolute offsets (what
 * `GET /instance/serial/history` pages through) and the live websocket clients it fans out to.
 * Kept apart from the instance state machine in fake-propolis-server.ts.
 */
import type { RawData, WebSocket } from "ws";

const SERIAL_MAX = 1024 * 1024;
export const SERIAL_PAGE = 16 * 1024;

/** What a history request gets: bytes from `start` or an error message for a 400. */
export type HistoryPage = { data: number[]; last_byte_offset: number } | { error: string };

export class FakeSerial {
  /** Bytes the clients sent (binary frames), in order. */
  readonly input: Buffer[] = [];
  readonly #clients = new Set<WebSocket>();
  #buffer = Buffer.alloc(0);
  #evicted = 0;

  /** Total bytes ever written (evicted + buffered). */
  get total(): number {
    return this.#evicted + this.#buffer.length;
  }

  write(bytes: Buffer | string): void {
    const b = typeof bytes === "string" ? Buffer.from(bytes) : bytes;
    this.#buffer = Buffer.concat([this.#buffer, b]);
    if (this.#buffer.length > SERIAL_MAX) {
      const drop = this.#buffer.length - SERIAL_MAX;
      this.#buffer = this.#buffer.subarray(drop);
      this.#evicted += drop;
    }
    for (const ws of this.#clients) ws.send(b, { binary: true });
  }

  /** A text frame to every client (e.g. a migration notice). */
  broadcastText(text: string): void {
    for (const ws of this.#clients) ws.send(text);
  }

  /** A fresh process: empty buffer, offsets from 0. */
  reset(): void {
    this.#buffer = Buffer.alloc(0);
    this.#evicted = 0;
  }

  terminateClients(): void {
    for (const ws of this.#clients) ws.terminate();
  }

  closeClients(code: number, reason: string): void {
    for (const ws of this.#clients) ws.close(code, reason);
  }

  /** One page of history from an absolute offset, or why it cannot be served. */
  page(start: number, maxBytes: number): HistoryPage {
    if (start < this.#evicted)
      return { error: `Requested byte offset ${start} is no longer cached` };
    const from = Math.min(start, this.total) - this.#evicted;
    const data = this.#buffer.subarray(from, from + maxBytes);
    return { data: [...data], last_byte_offset: this.#evicted + from + data.length };
  }

  /** A new websocket client: replay from `start` (default: only new bytes), then live. */
  attach(ws: WebSocket, start: number | undefined): void {
    const from = Math.max(0, (start ?? this.total) - this.#evicted);
    if (from < this.#buffer.length) ws.send(this.#buffer.subarray(from), { binary: true });
    ws.on("message", (data: RawData, isBinary: boolean) => {
      if (!isBinary) return;
      this.input.push(Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as Buffer));
    });
    this.#clients.add(ws);
    ws.on("close", () => this.#clients.delete(ws));
  }
}
