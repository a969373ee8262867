import type { Command } from "@commander-js/extra-typings";
import { addConnectionFlags, hostArg, vmIdArg, withClient } from "../connection.js";
import { examples } from "../output.js";

/** Ctrl-] ends the session, as in telnet. */
const ESCAPE = 0x1d;

/** vmq console: the VM's serial console, relayed over NATS by its host's worker. */
export function registerConsole(program: Command): void {
  addConnectionFlags(
    program
      .command("console")
      .description(
        "Attach to a VM's serial console over NATS: stdin goes to the VM, its output to stdout; Ctrl-] or the end of stdin detaches",
      )
      .argument("<vmId>", "the VM's id")
      .option("--host <host>", "the VM's host (default: from the vmq-vms view)")
      .addHelpText("after", examples("vmq console web-1", "vmq console web-1 --host h1")),
  ).action(async (rawVmId, flags) => {
    const vmId = vmIdArg(rawVmId);
    const host = hostArg(flags.host);
    await withClient(flags, async ({ client }) => {
      const session = await client.openConsole(vmId, host ? { host } : {});
      const stdin = process.stdin;
      const tty = stdin.isTTY;
      if (tty) {
        process.stderr.write(`connected to the console of ${vmId} (Ctrl-] to detach)\r\n`);
        stdin.setRawMode(true);
      }
      let detached = false;
      let wake: () => void = () => undefined;
      const ended = new Promise<void>((r) => (wake = r));
      const detach = () => {
        detached = true;
        wake();
      };
      const onData = (chunk: Buffer) => {
        const i = chunk.indexOf(ESCAPE);
        if (i >= 0) {
          if (i > 0) session.write(chunk.subarray(0, i));
          detach();
          return;
        }
        session.write(chunk);
      };
      stdin.on("data", onData);
      stdin.once("end", detach);
      stdin.resume();
      // Output until the worker closes the session (output() ends) or we detach.
      const pump = (async () => {
        for await (const bytes of session.output()) process.stdout.write(bytes);
      })();
      await Promise.race([ended, pump]);
      stdin.off("data", onData);
      if (tty) stdin.setRawMode(false);
      stdin.destroy(); // a paused pipe would keep the process alive
      session.close();
      await pump.catch(() => undefined);
      if (!detached && session.closedReason)
        process.stderr.write(`\r\nconsole closed by the worker: ${session.closedReason}\n`);
      else if (tty) process.stderr.write("\r\ndetached\n");
    });
  });
}
