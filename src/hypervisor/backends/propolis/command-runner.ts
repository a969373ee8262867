/**
 * The one way the Propolis backend runs external tools (zfs, zonecfg, zoneadm, zlogin, dladm,
 * the ISO builder, propolis-server): execa with an argument array and never a shell, a timeout, the
 * caller's AbortSignal, and stderr carried into the thrown HypervisorError.
 */
import { isAbsolute, join } from "node:path";
import { execa } from "execa";
import { HypervisorError, type HypervisorErrorCode } from "../../errors.js";

export type Tool =
  "zfs" | "zonecfg" | "zoneadm" | "zlogin" | "dladm" | "mkisofs" | "propolis-server";

export interface CommandRunnerOptions {
  /** Per-tool binary paths (absolute), e.g. { zfs: "/usr/sbin/zfs" }. */
  binaries?: Partial<Record<Tool, string>>;
  /** A directory holding every tool under its own name (tests point this at fakes). */
  binDir?: string;
  /** Extra environment for every command (the parent's environment is inherited). */
  env?: Record<string, string>;
  /** Default per-command timeout; 60 s. */
  timeoutMs?: number;
}

export interface RunOptions {
  signal?: AbortSignal;
  timeoutMs?: number;
  /** The code thrown on a non-zero exit (default: per tool). */
  errorCode?: HypervisorErrorCode;
  /** Return non-zero exits instead of throwing (spawn failures and timeouts still throw). */
  allowFailure?: boolean;
  input?: string;
}

export interface RunResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

const DEFAULT_CODES: Record<Tool, HypervisorErrorCode> = {
  zfs: "image::zfs-failed",
  zonecfg: "zone::command-failed",
  zoneadm: "zone::command-failed",
  zlogin: "zone::command-failed",
  dladm: "zone::command-failed",
  mkisofs: "cloudinit::iso-failed",
  "propolis-server": "propolis::launch-failed",
};

/** Keeps error messages and details bounded. */
const clip = (s: string, max = 2000) => (s.length > max ? `${s.slice(0, max)}…` : s);

export class CommandRunner {
  readonly #opts: CommandRunnerOptions;

  constructor(opts: CommandRunnerOptions = {}) {
    for (const [tool, path] of Object.entries(opts.binaries ?? {})) {
      if (!isAbsolute(path)) {
        throw new HypervisorError(
          "hypervisor::invalid-path",
          `binary for ${tool} must be absolute`,
        );
      }
    }
    this.#opts = opts;
  }

  /** The executable that runs for a tool. */
  binary(tool: Tool): string {
    const explicit = this.#opts.binaries?.[tool];
    if (explicit !== undefined) return explicit;
    return this.#opts.binDir === undefined ? tool : join(this.#opts.binDir, tool);
  }

  async run(tool: Tool, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    for (const a of args) {
      // Arguments go to execve unchanged; a NUL would silently truncate one.
      if (a.includes("\u0000")) {
        throw new HypervisorError("hypervisor::invalid-path", `argument to ${tool} contains NUL`);
      }
    }
    const file = this.binary(tool);
    const what = `${tool} ${args.join(" ")}`;
    if (opts.signal?.aborted) {
      throw new HypervisorError("hypervisor::aborted", `${what} was cancelled before it ran`, {});
    }
    const timeoutMs = opts.timeoutMs ?? this.#opts.timeoutMs ?? 60_000;
    const r = await execa(file, [...args], {
      shell: false,
      reject: false,
      timeout: timeoutMs,
      ...(opts.signal ? { cancelSignal: opts.signal } : {}),
      ...(opts.input === undefined ? { stdin: "ignore" as const } : { input: opts.input }),
      env: { LC_ALL: "C", ...this.#opts.env },
      extendEnv: true,
      forceKillAfterDelay: 2_000,
      maxBuffer: 4 * 1024 * 1024,
    });
    const stdout = typeof r.stdout === "string" ? r.stdout : "";
    const stderr = typeof r.stderr === "string" ? r.stderr : "";
    const details = { tool, binary: file, args: [...args], stderr: clip(stderr) };
    if (r.isCanceled) {
      throw new HypervisorError("hypervisor::aborted", `${what} was cancelled`, {
        details,
      });
    }
    if (r.timedOut) {
      throw new HypervisorError("hypervisor::timeout", `${what} timed out after ${timeoutMs} ms`, {
        details,
      });
    }
    if (r.exitCode === undefined) {
      // Never started (ENOENT, EACCES) or killed by a signal.
      const reason = r.code ?? (r.signal ? `signal ${r.signal}` : "unknown failure");
      throw new HypervisorError(
        reason === "ENOENT" ? "hypervisor::backend-unavailable" : DEFAULT_CODES[tool],
        `${what} could not run (${reason})`,
        { details, hint: `Check that ${file} exists and is executable.`, cause: r },
      );
    }
    if (r.exitCode !== 0 && !opts.allowFailure) {
      const first = stderr.trim().split("\n")[0] ?? "";
      throw new HypervisorError(
        opts.errorCode ?? DEFAULT_CODES[tool],
        `${what} exited ${r.exitCode}${first ? `: ${clip(first, 300)}` : ""}`,
        { details: { ...details, exitCode: r.exitCode } },
      );
    }
    return { exitCode: r.exitCode, stdout, stderr };
  }
}
