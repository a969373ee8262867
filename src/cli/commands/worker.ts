import type { Command } from "@commander-js/extra-typings";
import { WorkerConfig } from "../../config/config.js";
import { describeIssues } from "../../contracts/index.js";
import { addConfigFlags, configFromFlags } from "../config-flags.js";
import { CliError, reportError } from "../errors.js";
import { examples } from "../output.js";

export function registerWorker(program: Command): void {
  addConfigFlags(
    program
      .command("worker")
      .description(
        "Run the worker of this host: consume its VM commands, run them, publish events. With no --nats it starts an embedded nats-server.",
      )
      .addHelpText(
        "after",
        examples(
          "vmq worker                                   # embedded NATS, Noop backend, data in ./.vmq",
          "vmq worker --nats nats://n1:4222 --host h1 --backend qemu --image-roots /var/lib/vmq/images",
          "VMQ_LOG_FORMAT=json vmq worker --nats nats://n1:4222 --host h1 --http :9464",
        ),
      ),
  ).action(async (opts) => {
    const parsed = WorkerConfig.safeParse(configFromFlags(opts));
    if (!parsed.success)
      throw new CliError(
        "config::invalid",
        `invalid worker configuration: ${describeIssues(parsed.error)}`,
        "See vmq worker --help.",
      );
    // The data dir's lock first, before the worker's code is even loaded: a second worker on
    // a data dir is told so at once. The worker and its backends are loaded here, not at the
    // top: they are most of what the CLI would otherwise load on every start.
    const [{ createLogger }, { DataDirLock }] = await Promise.all([
      import("../../observability/logger.js"),
      import("../../worker/data-dir-lock.js"),
    ]);
    const log = createLogger({ level: parsed.data.logLevel, format: parsed.data.logFormat });
    const lock = new DataDirLock(parsed.data.dataDir, log);
    try {
      await lock.start();
    } catch (e) {
      process.exit(reportError(e));
    }
    const { Worker } = await import("../../worker/worker.js");
    const worker = new Worker(parsed.data, { logger: log, lock });
    let signals = 0;
    const onSignal = (sig: NodeJS.Signals) => {
      signals++;
      if (worker.state === "failed") process.exit(1); // torn down already: nothing to drain
      if (signals > 1) {
        log.warn(
          { sig },
          "second signal: exiting now (intents stay recorded; commands are redelivered)",
        );
        process.exit(130);
      }
      log.info({ sig }, "draining on signal");
      void worker.drain();
    };
    process.on("SIGTERM", onSignal);
    process.on("SIGINT", onSignal);
    try {
      await worker.start();
    } catch (e) {
      // start() stopped what it had started (the embedded nats-server too) before it threw:
      // exit now, not whenever a stray timer or socket lets the process go.
      process.exit(reportError(e));
    }
    await worker.run();
    if (worker.state === "failed" || worker.leaseLost) process.exitCode = 1;
  });
}
