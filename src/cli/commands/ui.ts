import { readFileSync } from "node:fs";
import type { Command } from "@commander-js/extra-typings";
import { isLoopback } from "../../ui/auth.js";
import { addConnectionFlags, withClient } from "../connection.js";
import { CliError } from "../errors.js";
import { examples } from "../output.js";

const DEFAULT_LISTEN = "127.0.0.1:8080";

/** vmq ui: a live view of the fleet in the browser, with lifecycle actions, DLQ and consoles. */
export function registerUi(program: Command): void {
  addConnectionFlags(
    program
      .command("ui")
      .description(
        "Serve the web UI (fleet, VMs, events, DLQ, consoles) until interrupted; loopback only unless given a token",
      )
      .option("--listen <address:port>", `where to listen (default ${DEFAULT_LISTEN})`)
      .option(
        "--ui-token <token>",
        "the token a browser must present; required for a non-loopback --listen (env VMQ_UI_TOKEN)",
      )
      .option("--ui-token-file <file>", "read the UI token from this file")
      .option("--log-level <level>", "log level of the UI's own log on stderr", "warn")
      .addHelpText(
        "after",
        examples(
          "vmq ui",
          "vmq ui --context lab --listen 127.0.0.1:9090",
          "vmq ui --listen 0.0.0.0:8080 --ui-token-file /etc/vmq/ui-token",
        ),
      ),
  ).action(async (flags) => {
    const { host, port } = parseListen(flags.listen ?? process.env.VMQ_UI_LISTEN ?? DEFAULT_LISTEN);
    const token = uiToken(flags.uiToken, flags.uiTokenFile);
    const loopback = isLoopback(host);
    if (!loopback && token === undefined)
      throw new CliError(
        "ui::token-required",
        `refusing to serve the UI on ${host}, which is not a loopback address, without a token`,
        "Pass --ui-token-file <file> (or --ui-token, VMQ_UI_TOKEN), or listen on 127.0.0.1.",
      );
    const [{ createLogger }, { startUi }] = await Promise.all([
      import("../../observability/logger.js"),
      import("../../ui/server.js"),
    ]);
    const log = createLogger({ level: flags.logLevel, name: "vmq-ui" });
    await withClient(flags, async ({ client }) => {
      const ui = await startUi({ client, log, host, port, loopback, token }).catch((e: unknown) => {
        throw new CliError(
          "cli::invalid-option",
          `cannot listen on ${host}:${port}: ${(e as Error).message}`,
          "Choose another --listen address or port.",
        );
      });
      const where = token === undefined ? ui.url : `${ui.url}?token=<your token>`;
      process.stdout.write(`vmq ui listening on ${ui.url} (open ${where})\n`);
      await new Promise<void>((resolve) => {
        process.once("SIGINT", resolve);
        process.once("SIGTERM", resolve);
      });
      await ui.close();
    });
  });
}

function parseListen(raw: string): { host: string; port: number } {
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(raw.trim());
  const port = Number(m?.[2]);
  if (!m?.[1] || port > 65535)
    throw new CliError(
      "cli::invalid-option",
      `--listen must be <address>:<port>, e.g. ${DEFAULT_LISTEN}, not ${JSON.stringify(raw)}`,
    );
  return { host: m[1].replace(/^\[|\]$/g, ""), port };
}

function uiToken(flag: string | undefined, file: string | undefined): string | undefined {
  let t = flag ?? process.env.VMQ_UI_TOKEN;
  if (file !== undefined) {
    try {
      t = readFileSync(file, "utf8").trim();
    } catch (e) {
      throw new CliError(
        "cli::unreadable-file",
        `cannot read --ui-token-file ${file}: ${(e as Error).message}`,
      );
    }
  }
  if (t !== undefined && t.length < 16)
    throw new CliError(
      "cli::invalid-option",
      "the UI token must be at least 16 characters",
      "Generate one, e.g. openssl rand -hex 24 > ui-token.",
    );
  return t;
}
