import assert from "node:assert/strict";
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { createLogger, prettyOn } from "../../../src/observability/logger.js";

/**
 * What a logger writes to a file descriptor, in the given format. Both streams write after the
 * call returns (pino-pretty is a Transform, pino's destination is asynchronous): the fd is closed
 * only once the line is there, never under a pending write.
 */
async function logged(
  format: "json" | "pretty",
  write: (log: ReturnType<typeof createLogger>) => void,
): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), "vmq-log-"));
  const file = join(dir, "log");
  const fd = openSync(file, "w");
  try {
    const log = createLogger({ destination: fd, format, colour: false });
    write(log);
    log.flush();
    const end = Date.now() + 10_000;
    while (!readFileSync(file, "utf8").endsWith("\n") && Date.now() < end)
      await new Promise((r) => setTimeout(r, 20));
    return readFileSync(file, "utf8");
  } finally {
    closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  }
}

describe("worker logs", () => {
  it("auto is pretty on a terminal and JSON elsewhere; json and pretty are what they say", () => {
    assert.equal(
      prettyOn("auto", 2, () => true),
      true,
    );
    assert.equal(
      prettyOn("auto", 2, () => false),
      false,
    );
    assert.equal(
      prettyOn("json", 2, () => true),
      false,
    );
    assert.equal(
      prettyOn("pretty", 2, () => false),
      true,
    );
  });

  it("pretty lines are one per record, readable, and redact secrets as JSON does", async () => {
    const secret = (log: ReturnType<typeof createLogger>) =>
      log.info(
        {
          command: { spec: { cloudInit: { userData: "#cloud-config\npassword: hunter2" } } },
          password: "s3cret-pass",
          token: "s3cret-token",
          vmId: "web-1",
        },
        "accepted a command",
      );
    const pretty = await logged("pretty", secret);
    const lines = pretty.split("\n").filter(Boolean);
    assert.equal(lines.length, 1, pretty);
    assert.match(lines[0] ?? "", /INFO.*accepted a command.*"vmId":"web-1"/);
    assert.doesNotMatch(lines[0] ?? "", /^\{/, "not a JSON line");
    for (const s of ["hunter2", "s3cret-pass", "s3cret-token"])
      assert.ok(!pretty.includes(s), `${s} is not in the pretty log`);
    assert.match(pretty, /\[redacted\]/);

    const json = await logged("json", secret);
    const rec = JSON.parse(json.split("\n")[0] ?? "{}") as Record<string, unknown>;
    assert.equal(rec.password, "[redacted]");
    for (const s of ["hunter2", "s3cret-pass", "s3cret-token"]) assert.ok(!json.includes(s), s);
  });
});
