import { readFileSync } from "node:fs";
import { Option, type Command, type OptionValues } from "@commander-js/extra-typings";
import { sealSpecFor, type CommandBody, type VmqClient } from "../../client/index.js";
import {
  DEFAULT_STOP_TIMEOUT_MS,
  MAX_STOP_TIMEOUT_MS,
  StopForce,
  VmSpec,
  describeIssues,
  type VmEvent,
} from "../../contracts/index.js";
import { isVmqError, receivedCode } from "../../lib/errors.js";
import {
  EXIT,
  EXIT_CODES_HELP,
  addConnectionFlags,
  hostArg,
  intOption,
  printJson,
  vmIdArg,
  withClient,
} from "../connection.js";
import { CliError } from "../errors.js";
import { examples } from "../output.js";

interface CommonFlags {
  host?: string;
  queueForUnknownHost?: boolean;
  keepQueued?: boolean;
  wait: boolean;
  json?: boolean;
  waitTimeoutMs?: number;
  correlationId?: string;
  expectedVersion?: number;
}

const DEFAULT_WAIT_MS = 60_000;

/** vmq prepare|start|stop|suspend|resume|destroy: publish a command, wait for its outcome. */
export function registerLifecycle(program: Command): void {
  const prepare = common(
    program
      .command("prepare")
      .description(
        "Prepare a VM from a spec file and/or flags, on --host or on a host chosen by placement",
      )
      .argument("<vmId>", "the VM's id (unique across the fleet)")
      .option("--spec <file>", "VmSpec as JSON (flags below override its fields)")
      .option("--name <name>", "human name (default: the vmId)")
      .addOption(new Option("--image <path>", "base image (imagePath)").conflicts("imageRef"))
      .option(
        "--image-ref <ref>",
        "base image from the object store (name:tag or name@sha256:<hex>)",
      )
      .option("--vcpus <n>", "virtual CPUs (default 1)", intOption("--vcpus"))
      .option("--memory-mb <n>", "memory in MiB (default 512)", intOption("--memory-mb"))
      .option("--disk-gb <n>", "disk size in GiB", intOption("--disk-gb"))
      .option("--network <net>", "user | none | tap:<bridge> | vnic:<name>")
      .option("--user-data <file>", "cloud-init user data (sealed to the target host's key)")
      .option(
        "--plaintext-user-data",
        "send --user-data unsealed, for a host whose worker publishes no key (older than sealing)",
      )
      .option("--uefi", "boot with UEFI firmware")
      .addOption(
        new Option("--backend <backend>", "backend (default: the host's)").choices([
          "qemu",
          "propolis",
          "noop",
        ]),
      ),
    "the VM's host (default: one chosen by placement among live hosts offering the backend)",
  ).addHelpText(
    "after",
    examples(
      "vmq prepare web-1 --image /var/lib/vmq/images/base.qcow2 --vcpus 2 --memory-mb 1024",
      "vmq prepare web-1 --spec web.json --host h1",
      "vmq prepare web-1 --image base.qcow2 --user-data cloud-init.yaml --no-wait",
    ),
  );
  prepare.action(async (rawVmId, flags) => {
    const vmId = vmIdArg(rawVmId);
    const spec = specFrom(vmId, flags);
    await withClient(flags, async ({ client }) => {
      let host = await knownHost(client, flags);
      if (!host) {
        const p = await client.placer.place(spec.backend ? { backend: spec.backend } : {});
        if (!p)
          throw new CliError(
            "client::no-host",
            "no live host can take this VM",
            "Check vmq hosts: a host must be heartbeating and offer the backend asked for.",
            EXIT.failed,
          );
        host = p.host;
      }
      const plaintextUserData = flags.plaintextUserData === true;
      const sealed = await sealSpecFor(() => client.hosts(), host, spec, { plaintextUserData });
      await run(
        client,
        host,
        { type: "vm.prepare", vmId, spec: sealed, ...envelope(flags) },
        flags,
      );
    });
  });

  for (const [name, type, what] of [
    ["start", "vm.start", "Start a prepared or stopped VM"],
    ["suspend", "vm.suspend", "Suspend (pause) a running VM"],
    ["resume", "vm.resume", "Resume a suspended VM"],
  ] as const) {
    common(program.command(name).description(what).argument("<vmId>", "the VM's id"))
      .addHelpText(
        "after",
        examples(`vmq ${name} web-1`, `vmq ${name} web-1 --json`, `vmq ${name} web-1 --no-wait`),
      )
      .action(async (rawVmId, flags) => {
        const vmId = vmIdArg(rawVmId);
        await withClient(flags, async ({ client }) => {
          const host = await client.hostOf(vmId, await knownHost(client, flags));
          await run(client, host, { type, vmId, ...envelope(flags) }, flags);
        });
      });
  }

  common(
    program
      .command("stop")
      .description(
        "Stop a VM: graceful shutdown, escalating after --timeout-ms unless --force never",
      )
      .argument("<vmId>", "the VM's id")
      .option(
        "--timeout-ms <ms>",
        `how long a graceful stop may take (default ${DEFAULT_STOP_TIMEOUT_MS}, at most ${MAX_STOP_TIMEOUT_MS})`,
        intOption("--timeout-ms"),
      )
      .addOption(
        new Option("--force <when>", "when to force the VM off (default after-timeout)").choices(
          StopForce.options,
        ),
      ),
  )
    .addHelpText(
      "after",
      examples(
        "vmq stop web-1",
        "vmq stop web-1 --timeout-ms 30000",
        "vmq stop web-1 --force now --json",
      ),
    )
    .action(async (rawVmId, flags) => {
      const vmId = vmIdArg(rawVmId);
      await withClient(flags, async ({ client }) => {
        const host = await client.hostOf(vmId, await knownHost(client, flags));
        const body: CommandBody = {
          type: "vm.stop",
          vmId,
          ...(flags.timeoutMs === undefined ? {} : { timeoutMs: flags.timeoutMs }),
          ...(flags.force ? { force: flags.force } : {}),
          ...envelope(flags),
        };
        await run(client, host, body, flags, stopWait(flags.timeoutMs));
      });
    });

  common(
    program
      .command("destroy")
      .description("Destroy a VM and its resources (stopping it first if it runs)")
      .argument("<vmId>", "the VM's id")
      .option(
        "--timeout-ms <ms>",
        `how long the graceful stop before destroying may take (default ${DEFAULT_STOP_TIMEOUT_MS})`,
        intOption("--timeout-ms"),
      ),
  )
    .addHelpText(
      "after",
      examples("vmq destroy web-1", "vmq destroy web-1 --timeout-ms 5000 --json"),
    )
    .action(async (rawVmId, flags) => {
      const vmId = vmIdArg(rawVmId);
      await withClient(flags, async ({ client }) => {
        const host = await client.hostOf(vmId, await knownHost(client, flags));
        const body: CommandBody = {
          type: "vm.destroy",
          vmId,
          ...(flags.timeoutMs === undefined ? {} : { timeoutMs: flags.timeoutMs }),
          ...envelope(flags),
        };
        await run(client, host, body, flags, stopWait(flags.timeoutMs));
      });
    });
}

/** The flags every lifecycle command has; their types join the command's own. */
function common<A extends unknown[], O extends OptionValues>(
  cmd: Command<A, O>,
  hostHelp = "the VM's host (default: the one its vmq-vms record names)",
) {
  return addConnectionFlags(
    cmd
      .option("--host <host>", hostHelp)
      .option(
        "--queue-for-unknown-host",
        "publish even if --host is not a live host in vmq-hosts (it runs when that worker starts)",
      )
      .option("--no-wait", "publish and print the commandId, without waiting for the outcome")
      .option(
        "--keep-queued",
        "let the command run even after this wait gives up (default: it expires with the wait)",
      )
      .option("--json", "print the result as JSON on stdout")
      .option(
        "--wait-timeout-ms <ms>",
        `how long to wait for the outcome (default ${DEFAULT_WAIT_MS})`,
        intOption("--wait-timeout-ms"),
      )
      .option("--correlation-id <id>", "carried onto every event the command causes")
      .option(
        "--expected-version <seq>",
        "the VM's lastEventSeq you decided on; rejected if it moved on",
        intOption("--expected-version"),
      ),
  ).addHelpText("after", EXIT_CODES_HELP);
}

/**
 * The --host given, checked against the live hosts: a typo would otherwise queue a command
 * that nobody ever takes. --queue-for-unknown-host keeps that possible on purpose.
 */
async function knownHost(client: VmqClient, flags: CommonFlags): Promise<string | undefined> {
  const host = hostArg(flags.host);
  if (!host || flags.queueForUnknownHost) return host;
  const live = await client.hosts();
  if (live.some((h) => h.host === host)) return host;
  throw new CliError(
    "client::host-unknown",
    `host ${host} is not a live host in the vmq-hosts registry (live: ${live.map((h) => h.host).join(", ") || "none"})`,
    "Check the host id (vmq hosts); pass --queue-for-unknown-host to queue the command for a worker that has not started yet.",
    EXIT.usage,
  );
}

const envelope = (f: CommonFlags) => ({
  ...(f.correlationId ? { correlationId: f.correlationId } : {}),
  ...(f.expectedVersion === undefined ? {} : { expectedVersion: f.expectedVersion }),
});

/** A stop may legitimately take its whole timeout: wait for it and some more. */
const stopWait = (timeoutMs: number | undefined): number =>
  Math.max(DEFAULT_WAIT_MS, (timeoutMs ?? DEFAULT_STOP_TIMEOUT_MS) + 30_000);

interface PrepareFlags {
  spec?: string;
  name?: string;
  image?: string;
  imageRef?: string;
  vcpus?: number;
  memoryMb?: number;
  diskGb?: number;
  network?: string;
  userData?: string;
  uefi?: boolean;
  backend?: string;
}

function readText(file: string, what: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch (e) {
    throw new CliError(
      "cli::unreadable-file",
      `cannot read ${what} ${file}: ${(e as Error).message}`,
    );
  }
}

function network(raw: string): unknown {
  const [type = "", name] = raw.split(":", 2);
  if (type === "tap") return { type, bridge: name };
  if (type === "vnic") return { type, name };
  return { type };
}

/** The VmSpec from --spec and the flags, validated here so a bad one exits 2 before publishing. */
function specFrom(vmId: string, f: PrepareFlags): VmSpec {
  let base: Record<string, unknown> = {};
  if (f.spec) {
    try {
      base = JSON.parse(readText(f.spec, "spec file")) as Record<string, unknown>;
    } catch (e) {
      if (isVmqError(e)) throw e;
      throw new CliError(
        "cli::invalid-spec",
        `spec file ${f.spec} is not JSON: ${(e as Error).message}`,
      );
    }
    if (typeof base !== "object" || base === null || Array.isArray(base))
      throw new CliError("cli::invalid-spec", `spec file ${f.spec} must hold a JSON object`);
  }
  const raw = {
    name: vmId,
    vcpus: 1,
    memoryMb: 512,
    ...base,
    ...(f.name ? { name: f.name } : {}),
    // One of the two forms: a flag replaces whichever one the spec file gave.
    ...(f.image ? { imagePath: f.image, image: undefined } : {}),
    ...(f.imageRef ? { image: f.imageRef, imagePath: undefined } : {}),
    ...(f.vcpus === undefined ? {} : { vcpus: f.vcpus }),
    ...(f.memoryMb === undefined ? {} : { memoryMb: f.memoryMb }),
    ...(f.diskGb === undefined ? {} : { diskGb: f.diskGb }),
    ...(f.network ? { network: network(f.network) } : {}),
    ...(f.userData ? { cloudInit: { userData: readText(f.userData, "user data") } } : {}),
    ...(f.uefi ? { uefi: true } : {}),
    ...(f.backend ? { backend: f.backend } : {}),
  };
  const parsed = VmSpec.safeParse(raw);
  if (!parsed.success)
    throw new CliError(
      "cli::invalid-spec",
      `invalid VM spec: ${describeIssues(parsed.error)}`,
      "Give --image or --image-ref (and --vcpus, --memory-mb), or a --spec file; see vmq schemas commands/vm.prepare.v1.json.",
    );
  return parsed.data;
}

/**
 * Publishes the command; unless --no-wait, waits for its outcome (with a progress line on a
 * terminal) and turns it into output and an exit code.
 */
async function run(
  client: VmqClient,
  host: string,
  body: CommandBody,
  flags: CommonFlags,
  defaultWaitMs = DEFAULT_WAIT_MS,
): Promise<void> {
  const timeoutMs = flags.waitTimeoutMs ?? defaultWaitMs;
  // A wait that gives up takes the command with it (command::expired), unless asked not to.
  const expires = flags.wait && !flags.keepQueued && body.notAfter === undefined;
  const { command, seq, duplicate } = await client.publish(
    host,
    expires ? { ...body, notAfter: new Date(Date.now() + timeoutMs).toISOString() } : body,
  );
  const base = { commandId: command.commandId, type: command.type, vmId: command.vmId, host, seq };
  if (!flags.wait) {
    if (flags.json) printJson({ ...base, duplicate, waited: false });
    else process.stdout.write(`${command.commandId}\n`);
    return;
  }
  const progress =
    !flags.json && process.stderr.isTTY
      ? new Progress(command.type, command.vmId, host)
      : undefined;
  let result: { outcome: VmEvent; outcomeSeq: number; accepted: boolean };
  // Ctrl-C leaves the command where it is (queued or running): say which one and how to follow.
  const onInterrupt = (): void => {
    progress?.done();
    process.stderr.write(
      `vmq: interrupted; ${command.type} ${command.vmId} (command ${command.commandId}) was published to ${host}${command.notAfter ? ` and expires unless its worker takes it by ${command.notAfter}` : " and runs when its worker takes it"} — follow it: vmq events ${command.vmId} --follow, or cancel it: vmq cancel ${command.commandId}\n`,
    );
    process.exit(130);
  };
  process.once("SIGINT", onInterrupt);
  try {
    result = await client.waitForOutcome(host, command.vmId, command.commandId, {
      timeoutMs,
      fromSeq: 0,
      onAccepted: () => progress?.accepted(),
    });
  } catch (e) {
    progress?.done();
    if (isVmqError(e, "client::outcome-timeout") || isVmqError(e, "client::not-accepted")) {
      const accepted = e.code === "client::outcome-timeout";
      if (flags.json) printJson({ ...base, ok: false, timedOut: true, accepted });
      throw new CliError(e.code, e.message, e.hint, EXIT.timeout);
    }
    throw e;
  } finally {
    process.off("SIGINT", onInterrupt);
    progress?.done();
  }
  const { outcome, outcomeSeq, accepted } = result;
  const ok = outcome.type !== "vm.command-rejected" && outcome.type !== "vm.command-failed";
  if (flags.json)
    printJson({
      ...base,
      ok,
      accepted,
      outcomeSeq,
      outcomeType: outcome.type,
      state: outcome.state,
      outcome,
    });
  else if (ok)
    process.stdout.write(
      `${command.vmId}: ${outcome.type}, now ${outcome.state} (host ${host}, version ${outcomeSeq})\n`,
    );
  if (outcome.type === "vm.command-rejected")
    throw new CliError(
      receivedCode(outcome.code),
      `${command.type} of ${command.vmId} was rejected: ${outcome.message}`,
      rejectionHint(outcome.code, outcome.state, command.vmId),
      EXIT.rejected,
    );
  if (outcome.type === "vm.command-failed")
    throw new CliError(
      receivedCode(outcome.code),
      `${command.type} of ${command.vmId} failed (attempt ${outcome.attempt}${outcome.retryable ? ", retryable" : ""}): ${outcome.message}`,
      undefined,
      EXIT.failed,
    );
}

/** The table's hint suits most rejections; a destroyed VM is not something to wait for. */
function rejectionHint(code: string, state: string, vmId: string): string | undefined {
  if (code === "command::illegal-transition" && state === "destroyed")
    return `VM ${vmId} is destroyed: nothing will bring it back; vmq prepare ${vmId} makes a new VM with this id.`;
  return undefined;
}

/** One line on stderr, rewritten in place, while a command is on its way (terminals only). */
class Progress {
  readonly #started = Date.now();
  readonly #timer: NodeJS.Timeout;
  #phase = "published, waiting for the worker";
  #shown = false;

  constructor(
    private readonly type: string,
    private readonly vmId: string,
    private readonly host: string,
  ) {
    this.#timer = setInterval(() => this.#draw(), 250);
    this.#draw();
  }

  accepted(): void {
    this.#phase = "accepted, running";
    this.#draw();
  }

  #draw(): void {
    const s = ((Date.now() - this.#started) / 1000).toFixed(1);
    process.stderr.write(
      `\r\x1b[2K${this.type} ${this.vmId} on ${this.host}: ${this.#phase}… ${s}s`,
    );
    this.#shown = true;
  }

  done(): void {
    clearInterval(this.#timer);
    if (this.#shown) process.stderr.write("\r\x1b[2K");
    this.#shown = false;
  }
}
