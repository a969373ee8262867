import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { execa } from "execa";
import { ROOT, runVmq } from "../helpers/cli.js";
import { WorkerProcess } from "../helpers/worker-process.js";
import { eventually } from "../helpers/worker-harness.js";

/** 20 by default (the bar); README_RUNS=2 for a quick local look. Each run starts 5 node processes. */
const RUNS = Number(process.env.README_RUNS ?? 20);
const QUICK_START_URL = "nats://127.0.0.1:4222";

/** The README's own text: the snippets run here are cut from it, so a change that breaks them fails. */
async function readme(): Promise<{ quickStart: string; sdk: string; all: string }> {
  const all = await readFile(join(ROOT, "README.md"), "utf8");
  const section = (title: string) => {
    const at = all.indexOf(`\n## ${title}\n`);
    assert.ok(at >= 0, `README has a "${title}" section`);
    const end = all.indexOf("\n## ", at + 1);
    return all.slice(at, end < 0 ? undefined : end);
  };
  return { quickStart: section("Quick start"), sdk: section("SDK"), all };
}

/** `node -e '<code>'` in a sh block: the code, to run with an argument array (no shell). */
function nodeEvalSnippet(text: string): string {
  const m = /```sh\nnode -e '\n([\s\S]*?)'\n```/.exec(text);
  assert.ok(m?.[1], "the quick start has a node -e SDK snippet");
  return m[1];
}

/** Inline `node dist/cli/main.js ...` commands, in order, as argument arrays. */
function cliSnippets(text: string): string[][] {
  const out = [...text.matchAll(/`node dist\/cli\/main\.js ([^`]+)`/g)].map((m) =>
    (m[1] ?? "").split(/\s+/),
  );
  assert.ok(out.length >= 3, "the quick start shows the CLI");
  return out;
}

/** Renames the snippet's VM (a whole quoted or bare word) and points it at this test's NATS. */
const adapt = (code: string, from: string, to: string, url: string): string => {
  assert.ok(code.includes(QUICK_START_URL), `the snippet connects to ${QUICK_START_URL}`);
  assert.ok(code.includes(`"${from}"`), `the snippet names VM "${from}"`);
  return code.replaceAll(QUICK_START_URL, url).replaceAll(`"${from}"`, `"${to}"`);
};

/** The quick start's worker: `npm start` is `vmq worker` with no --nats (embedded NATS, Noop). */
function quickStartWorker(dir: string): WorkerProcess {
  return new WorkerProcess(["--host", "qs", "--data-dir", dir, "--embedded-port", "0"]).start();
}

async function urlOf(w: WorkerProcess): Promise<string> {
  const url = await eventually(
    () => [...w.output.matchAll(/"url":"(nats:\/\/127\.0\.0\.1:\d+)"/g)].at(-1)?.[1],
    20_000,
    "embedded NATS url in the log",
  );
  await eventually(() => (w.ready ? true : undefined), 20_000, "worker running");
  return url;
}

describe("the README's quick start and snippets, run as written", { timeout: 600_000 }, () => {
  it(`npm start, the SDK and CLI snippets ${RUNS} times, a restart that keeps the VMs`, async (t) => {
    const { quickStart, sdk } = await readme();
    const pkg = JSON.parse(await readFile(join(ROOT, "package.json"), "utf8")) as {
      scripts: Record<string, string>;
    };
    assert.match(quickStart, /npm start/);
    assert.equal(pkg.scripts.start, "node dist/cli/main.js worker", "npm start is vmq worker");
    const evalCode = nodeEvalSnippet(quickStart);
    const sdkCode = /```js\n([\s\S]*?)```/.exec(sdk)?.[1];
    assert.ok(sdkCode, "the SDK section has a js snippet");
    const cli = cliSnippets(quickStart);
    // The restart paragraph: stop, npm start again, `get demo` still says running.
    assert.match(quickStart, /restart[\s\S]*npm start[\s\S]*get demo[\s\S]*running/);
    const restartGet = cli.findIndex((a) => a[0] === "get");
    assert.ok(restartGet > 0, "the restart step's get is a CLI snippet");

    const dir = await mkdtemp(join(tmpdir(), "vmq-readme-"));
    let w = quickStartWorker(dir);
    const kept: string[] = [];
    try {
      const url = await urlOf(w);
      const env = { VMQ_NATS_URL: url };
      for (let i = 0; i < RUNS; i++) {
        // The quick start's node -e snippet: prepare, start without a host, get says running.
        const q = await execa(process.execPath, ["-e", adapt(evalCode, "demo", `sdk-${i}`, url)], {
          cwd: ROOT,
          reject: false,
          timeout: 60_000,
        });
        assert.equal(q.exitCode, 0, `run ${i}: ${q.stderr}`);
        assert.match(q.stdout, /type: 'vm\.prepared'[\s\S]*type: 'vm\.started'[\s\S]*\nrunning$/);
        kept.push(`sdk-${i}`);

        // The SDK section's module: prepare, start, get running, publish + cancel.
        const code = adapt(sdkCode, "web-1", `web-${i}`, url);
        const s: { exitCode?: number | undefined; stdout: string; stderr: string } = await execa(
          process.execPath,
          ["--input-type=module"],
          {
            cwd: ROOT,
            reject: false,
            timeout: 60_000,
            input: code,
          },
        );
        assert.equal(s.exitCode, 0, `run ${i}: ${s.stderr}`);
        assert.match(s.stdout, /^vm\.prepared qs \d+\nrunning\n(cancelled|accepted)$/);

        // The CLI line, in order (up to the restart step), on its own VM.
        for (const args of cli.slice(0, restartGet)) {
          const r = await runVmq(
            args.map((a) => (a === "demo" ? `cli-${i}` : a)),
            { env },
          );
          assert.equal(r.exitCode, 0, `run ${i}: vmq ${args.join(" ")}: ${r.stderr}`);
          if (args[0] === "list") assert.match(r.stdout, new RegExp(`cli-${i}\\s.*running`));
        }
        kept.push(`cli-${i}`);
      }
      t.diagnostic(`quick start snippets: ${RUNS}/${RUNS} runs passed`);

      // Ctrl-C (the worker drains), npm start again: every VM is still running.
      await w.kill("SIGINT");
      assert.equal(w.proc?.exitCode ?? (await w.exit()), 0);
      w = quickStartWorker(dir);
      const env2 = { VMQ_NATS_URL: await urlOf(w) };
      const getArgs = cli[restartGet] ?? [];
      for (const vmId of kept) {
        const r = await runVmq([...getArgs.map((a) => (a === "demo" ? vmId : a)), "--json"], {
          env: env2,
        });
        assert.equal(r.exitCode, 0, r.stderr);
        assert.equal((JSON.parse(r.stdout) as { state: string }).state, "running", vmId);
      }
    } finally {
      await w.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
