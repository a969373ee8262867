import { createConnection } from "node:net";
import { HypervisorError } from "../../errors.js";
import type { CallOptions, ConsoleConnection, ConsoleHandlers } from "../../hypervisor.js";

/** A serial console on a unix socket (QEMU's `-chardev socket,server`). */
export async function openUnixConsole(
  path: string,
  vmId: string,
  handlers: ConsoleHandlers,
  opts: CallOptions = {},
): Promise<ConsoleConnection> {
  opts.signal?.throwIfAborted();
  const sock = createConnection(path);
  try {
    await new Promise<void>((resolve, reject) => {
      const onAbort = () => reject(new Error("cancelled"));
      opts.signal?.addEventListener("abort", onAbort, { once: true });
      sock.once("connect", () => {
        opts.signal?.removeEventListener("abort", onAbort);
        resolve();
      });
      sock.once("error", (e) => {
        opts.signal?.removeEventListener("abort", onAbort);
        reject(e);
      });
    });
  } catch (e) {
    sock.destroy();
    // No socket, or nobody listening on it: QEMU is not running (it made the socket at start).
    const gone = ["ENOENT", "ECONNREFUSED"].includes((e as NodeJS.ErrnoException).code ?? "");
    if (gone)
      throw new HypervisorError("console::not-running", `VM ${vmId} is not running`, { cause: e });
    throw new HypervisorError(
      "console::unavailable",
      `the serial console of ${vmId} cannot be opened: ${(e as Error).message}`,
      { cause: e },
    );
  }
  const end = endOnce(handlers);
  sock.on("data", (d: Buffer) => handlers.onData(d));
  sock.on("close", () => end.ended("closed"));
  sock.on("error", () => end.ended("error"));
  return {
    write: (bytes) => void sock.write(bytes),
    close: () => {
      end.closedByUs();
      sock.destroy();
    },
  };
}

/** onClose at most once, and never after our own close(). */
export function endOnce(handlers: ConsoleHandlers): {
  ended: (why: "closed" | "error") => void;
  closedByUs: () => void;
} {
  let done = false;
  return {
    ended: (why) => {
      if (done) return;
      done = true;
      handlers.onClose(why);
    },
    closedByUs: () => {
      done = true;
    },
  };
}
