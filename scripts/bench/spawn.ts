/** Starting bench children (child.ts) through execa and talking to them line by line. */
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { execa } from "execa";
import type { ChildArgs } from "./child.js";

const CHILD = fileURLToPath(new URL("./child.ts", import.meta.url));
const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const OPTS = {
  cwd: ROOT,
  stdin: "pipe",
  stdout: "pipe",
  stderr: "pipe",
  reject: false,
  buffer: false,
} as const;

const run = (args: string[], timeout: number) =>
  execa(process.execPath, args, { ...OPTS, timeout });
type Proc = ReturnType<typeof run>;

export class BenchChild {
  readonly #lines: string[] = [];
  readonly #waiters: ((line: string | undefined) => void)[] = [];
  #closed = false;
  stderr = "";

  private constructor(readonly proc: Proc) {
    proc.stderr.on("data", (d: Buffer) => {
      this.stderr = (this.stderr + d.toString()).slice(-4000);
    });
    const rl = createInterface({ input: proc.stdout });
    rl.on("line", (l) => {
      const w = this.#waiters.shift();
      if (w) w(l);
      else this.#lines.push(l);
    });
    rl.on("close", () => {
      this.#closed = true;
      for (const w of this.#waiters.splice(0)) w(undefined);
    });
  }

  static spawn(args: ChildArgs, nodeArgs: string[] = [], timeoutMs = 300_000): BenchChild {
    const proc = run([...nodeArgs, "--import", "tsx", CHILD, JSON.stringify(args)], timeoutMs);
    return new BenchChild(proc);
  }

  /** The next JSON line the child prints (lines that are not JSON objects are skipped). */
  async next<T>(): Promise<T> {
    for (;;) {
      const line =
        this.#lines.shift() ??
        (this.#closed
          ? undefined
          : await new Promise<string | undefined>((r) => this.#waiters.push(r)));
      if (line === undefined)
        throw new Error(`bench child ended without an answer: ${this.stderr.slice(-1500)}`);
      if (!line.startsWith("{")) continue;
      try {
        return JSON.parse(line) as T;
      } catch {
        /* not ours */
      }
    }
  }

  send(line: string): void {
    this.proc.stdin.write(`${line}\n`);
  }

  async exit(): Promise<number | undefined> {
    const r = await this.proc;
    return r.exitCode;
  }
}
