/**
 * Pid identity and signals. A pid file can outlive its process and the pid be reused by an
 * unrelated program, so no pid is signalled before /proc/<pid>/cmdline proves it is the QEMU
 * that owns this VM's QMP socket.
 */
import { readFile } from "node:fs/promises";
import { qmpChardevArg } from "./qemu-command-line.js";

/** The pid in a QEMU pid file, or undefined when absent or unreadable. */
export async function readPidFile(path: string): Promise<number | undefined> {
  try {
    const text = (await readFile(path, "utf8")).trim();
    if (!/^[0-9]{1,10}$/.test(text)) return undefined;
    const pid = Number(text);
    return pid > 1 ? pid : undefined;
  } catch {
    return undefined;
  }
}

export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** True when `pid` is alive and its command line names this VM's QMP socket. */
export async function isOurQemu(pid: number, qmpSocket: string): Promise<boolean> {
  let raw: string;
  try {
    raw = await readFile(`/proc/${pid}/cmdline`, "utf8");
  } catch {
    return false;
  }
  // A zombie has an empty command line: it is not a running QEMU either.
  const argv = raw.split("\0");
  const want = qmpChardevArg(qmpSocket);
  return argv.length > 1 && /qemu/.test(argv[0] ?? "") && argv.includes(want);
}

/** Signals the pid only when it is still our QEMU; returns whether a signal was sent. */
export async function signalOurQemu(
  pid: number,
  qmpSocket: string,
  signal: NodeJS.Signals,
): Promise<boolean> {
  if (!(await isOurQemu(pid, qmpSocket))) return false;
  try {
    process.kill(pid, signal);
    return true;
  } catch {
    return false;
  }
}

/**
 * Resolves true once our QEMU is gone, false after `ms`. `wake` (from QMP events and the
 * socket closing) ends a wait early; the poll is only a fallback and backs off to 250 ms.
 * After a wake the end may be near (SHUTDOWN, then QEMU closes its sockets and exits a few ms
 * later, with no further event): for a second the poll is fast (every 5 ms), so the exit is
 * seen when it happens rather than up to a backed-off interval later. A fired `signal` ends
 * the wait.
 */
export async function waitForExit(
  pid: number,
  qmpSocket: string,
  ms: number,
  wake?: (resolve: () => void) => () => void,
  signal?: AbortSignal,
): Promise<boolean> {
  const deadline = Date.now() + ms;
  let interval = 25;
  let fastUntil = 0;
  for (;;) {
    if (!(await isOurQemu(pid, qmpSocket))) return true;
    const left = deadline - Date.now();
    if (left <= 0 || signal?.aborted) return false;
    const woken = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => done(false), Math.min(interval, left));
      const off = wake?.(() => done(true));
      function done(byWake: boolean): void {
        clearTimeout(timer);
        off?.();
        resolve(byWake);
      }
    });
    if (woken) fastUntil = Date.now() + 1000;
    interval = Date.now() < fastUntil ? 5 : Math.min(250, interval * 2);
  }
}
