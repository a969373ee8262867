import { join } from "node:path";
import { execa, type ResultPromise } from "execa";

const ROOT = join(import.meta.dirname, "..", "..");
const SPAWN = { reject: false, cwd: ROOT, stdio: ["ignore", "pipe", "pipe"], all: true } as const;

/** `vmq worker` as a real child process (through tsx), to SIGKILL and restart it. */
export class WorkerProcess {
  proc: ResultPromise<typeof SPAWN> | undefined;
  output = "";
  constructor(readonly args: string[]) {}

  start(): this {
    this.proc = execa(
      process.execPath,
      ["--import", "tsx", join(ROOT, "src/cli/main.ts"), "worker", ...this.args],
      SPAWN,
    );
    this.proc.all.on(
      "data",
      (d: Buffer) => (this.output = (this.output + d.toString()).slice(-20_000)),
    );
    return this;
  }

  async kill(signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
    this.proc?.kill(signal);
    await this.proc;
  }

  async exit(): Promise<number | undefined> {
    return (await this.proc)?.exitCode;
  }
}
