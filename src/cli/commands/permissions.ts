import { Option, type Command } from "@commander-js/extra-typings";
import { WorkerConfig } from "../../config/config.js";
import { describeIssues } from "../../contracts/index.js";
import {
  permissionsConfig,
  schedulerPermissions,
  operatorPermissions,
  workerPermissions,
} from "../../contracts/permissions.js";
import { addConfigFlags, configFromFlags, type FlagSelection } from "../config-flags.js";
import { hostArg, printJson } from "../connection.js";
import { CliError } from "../errors.js";
import { examples } from "../output.js";

/** Only --prefix (and VMQ_PREFIX), exactly as the other commands take it. */
const PREFIX_ONLY: FlagSelection = { only: ["prefix"] };
const PrefixConfig = WorkerConfig.pick({ prefix: true });

/**
 * vmq permissions: the NATS permissions of a host's worker (or of a scheduler), from
 * src/contracts/permissions.ts, as a nats-server `permissions` block or as JSON. Offline: it
 * does not connect to NATS.
 */
export function registerPermissions(program: Command): void {
  addConfigFlags(
    program
      .command("permissions")
      .description(
        "Print the NATS permissions a host's worker (or a scheduler) needs, as a nats-server permissions block (offline)",
      )
      .option("--host <host>", "the worker's host id (required for --role worker)")
      .addOption(
        new Option("--role <role>", "whose permissions")
          .choices(["worker", "scheduler", "operator"] as const)
          .default("worker" as const),
      )
      .option(
        "--no-provision",
        "worker: without the right to create missing streams and buckets (once an admin has provisioned them)",
      )
      .option(
        "--compaction",
        "worker: also the rights to purge the events stream and the view's purge markers, which compaction needs to bound them (stream-wide: it could purge other hosts' events and view records)",
      )
      .option("--json", "print the permissions object as JSON")
      .addHelpText(
        "after",
        examples(
          "vmq permissions --host h1",
          "vmq permissions --role scheduler --prefix lab --json",
          "vmq permissions --host h1 --no-provision --compaction",
        ),
      ),
    PREFIX_ONLY,
  ).action((flags) => {
    const parsed = PrefixConfig.safeParse(configFromFlags(flags, process.env, PREFIX_ONLY));
    if (!parsed.success)
      throw new CliError(
        "config::invalid",
        `invalid settings: ${describeIssues(parsed.error)}`,
        "See --help for --prefix and its environment variable VMQ_PREFIX.",
      );
    const { prefix } = parsed.data;
    const host = hostArg(flags.host);
    if (flags.role === "worker" && host === undefined)
      throw new CliError(
        "cli::missing-host",
        "--host is required for the permissions of a worker",
        "Pass the worker's host id (--host h1), or --role scheduler.",
      );
    if (flags.role !== "worker" && host !== undefined)
      throw new CliError(
        "cli::invalid-option",
        "--host applies to --role worker only: a scheduler's permissions cover every host",
      );
    const perms =
      flags.role === "operator"
        ? operatorPermissions(prefix)
        : host === undefined
          ? schedulerPermissions(prefix)
          : workerPermissions(prefix, host, {
              provision: flags.provision,
              compaction: flags.compaction === true,
            });
    if (flags.json) {
      printJson(perms);
      return;
    }
    const whose =
      flags.role === "operator"
        ? "a vmq operator (a scheduler that may evacuate a dead host)"
        : host === undefined
          ? `a vmq scheduler`
          : `the vmq worker of host ${JSON.stringify(host)}`;
    process.stdout.write(
      [
        `# NATS permissions of ${whose}, prefix ${JSON.stringify(prefix)}.`,
        "# Paste into that user's entry in authorization { users: [ ... ] } (with its password,",
        "# nkey or TLS identity), or into a user JWT's pub/sub permissions.",
        `permissions: ${permissionsConfig(perms)}`,
        "",
      ].join("\n"),
    );
  });
}
