import { join } from "node:path";
import { execa } from "execa";
import { builtCliPath } from "./cli.js";

const ROOT = join(import.meta.dirname, "..", "..");

function spawnWorker(args: string[], env: Record<string, string>) {
  return execa(process.execPath, [builtCliPath, "worker", ...args], {
    reject: false,
    cwd: ROOT,
    stdio: ["ignore", "pipe", "pipe"],
    all: true,
    env,
  });
}

/** `vmq worker` as a real child process (through tsx), to SIGKILL and restart it. */
export class WorkerProcess {
  proc: ReturnType<typeof spawnWorker> | undefined;
  output = "";
  /** Commands this process found already done (logged as duplicates), for the chaos summary. */
  duplicates = 0;
  /** The worker logged "worker running": replay and reconcile are done. */
  ready = false;
  /** Failpoints that fired (the `vmq-failpoint: <name>` lines on stderr); complete once `ended()`. */
  failpoints: string[] = [];
  #stderrTail = "";

  constructor(
    readonly args: string[],
    readonly env: Record<string, string> = {},
  ) {}

  start(): this {
    this.proc = spawnWorker(this.args, this.env);
    this.proc.all.on("data", (d: Buffer) => {
      const text = d.toString();
      this.duplicates += text.split("duplicate command: it already has an outcome").length - 1;
      if (text.includes('"worker running"')) this.ready = true;
      this.output = (this.output + text).slice(-20_000);
    });
    this.proc.stderr.on("data", (d: Buffer) => {
      const lines = (this.#stderrTail + d.toString()).split("\n");
      this.#stderrTail = lines.pop() ?? "";
      for (const line of lines) {
        const m = /^vmq-failpoint: (\S+)$/.exec(line.trim());
        if (m?.[1]) this.failpoints.push(m[1]);
      }
    });
    return this;
  }

  /** Waits until the process has ended and all its output is read. */
  async ended(): Promise<void> {
    await this.proc;
  }

  /** The process has ended (exited or killed). */
  get dead(): boolean {
    return (this.proc?.exitCode ?? null) !== null || Boolean(this.proc?.signalCode);
  }

  async kill(signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
    this.proc?.kill(signal);
    await this.proc;
  }

  /**
   * Ends it as an operator would: SIGTERM (it drains and stops an embedded nats-server with it),
   * then SIGKILL if it has not ended after `graceMs`. A SIGKILL alone would leave the embedded
   * nats-server running (on purpose: see worker-data-dir-lock.test.ts).
   */
  async stop(graceMs = 15_000): Promise<void> {
    if (!this.proc || this.dead) return void (await this.proc);
    this.proc.kill("SIGTERM");
    const timer = setTimeout(() => this.proc?.kill("SIGKILL"), graceMs);
    try {
      await this.proc;
    } finally {
      clearTimeout(timer);
    }
  }

  async exit(): Promise<number | undefined> {
    return (await this.proc)?.exitCode;
  }
}
