/**
 * `vmq ui` in a real headless Chromium (Debian's, driven by puppeteer-core; never downloaded)
 * against a real nats-server, a real `vmq worker` (Noop backend) and the built `vmq ui`. The
 * console is a fake echo console served by the worker's own relay code on a second host (Noop
 * has no console). Also: 1,000 VMs at ~50 changes/s, measured (first render, update latency).
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { existsSync, mkdirSync } from "node:fs";
import { get } from "node:http";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Kvm } from "@nats-io/kv";
import { headers as natsHeaders, type NatsConnection } from "@nats-io/transport-node";
import type { Browser, Page } from "puppeteer-core";
import { VmqClient } from "../../src/client/index.js";
import { DLQ_HEADERS, names as namesFor } from "../../src/contracts/index.js";
import { emptyVm } from "../../src/domain/index.js";
import { silentLogger } from "../../src/observability/logger.js";
import { serveConsole } from "../../src/worker/console-relay.js";
import { ROOT, runVmq, builtCliPath } from "../helpers/cli.js";
import { HANDLE } from "../helpers/decider-spec.js";
import { NatsServer, testPrefix } from "../helpers/nats-server.js";
import { describeMissing, skipWhenMissing } from "../helpers/required.js";
import { WorkerProcess } from "../helpers/worker-process.js";
import { execa } from "execa";

const CHROMIUM = "/usr/bin/chromium";
const ART = join(ROOT, "test", ".artifacts", "ui");
const chromiumMissing = existsSync(CHROMIUM)
  ? undefined
  : {
      missing: `chromium not installed (${CHROMIUM})`,
      needed: "the web UI's tests in a real browser",
      fix: "run ./setup.sh, which installs Debian's chromium package",
    };

/** Starts `vmq ui` and resolves with its URL once it listens. */
async function startUi(args: string[]) {
  const proc = execa(process.execPath, [builtCliPath, "ui", ...args], {
    reject: false,
    cwd: ROOT,
    all: true,
  });
  let out = "";
  const url = await new Promise<string>((resolve, reject) => {
    proc.all.on("data", (d: Buffer) => {
      out += d.toString();
      const m = /listening on (http:\/\/\S+\/)/.exec(out);
      if (m?.[1]) resolve(m[1]);
    });
    void proc.then(() => reject(new Error(`vmq ui ended: ${out}`)));
  });
  return { proc, url };
}

const eventually = async <T>(f: () => Promise<T | undefined>, ms: number, what: string) => {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const v = await f().catch(() => undefined);
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out waiting for ${what}`);
};

const SKIP = chromiumMissing ? describeMissing(chromiumMissing) : false;

describe("vmq ui in a real browser", { timeout: 150_000 }, () => {
  let server: NatsServer;
  let nc: NatsConnection;
  let client: VmqClient;
  let prefix: string;
  let dir: string;
  let worker: WorkerProcess;
  let ui: Awaited<ReturnType<typeof startUi>>;
  let browser: Browser;
  let page: Page;
  let skipped = false;
  const shot = (p: Page, name: string) =>
    p.screenshot({ path: join(ART, `${name}.png`), fullPage: true });

  before(async () => {
    if (chromiumMissing) {
      skipped = true;
      return;
    }
    mkdirSync(ART, { recursive: true });
    server = await NatsServer.start();
    prefix = testPrefix();
    dir = await mkdtemp(join(tmpdir(), "vmq-ui-"));
    const conn = ["--nats", server.url, "--prefix", prefix];
    worker = new WorkerProcess(
      [
        ...conn,
        "--host",
        "h1",
        "--data-dir",
        join(dir, "h1"),
        "--backend",
        "noop",
        "--heartbeat-ms",
        "500",
      ],
      { VMQ_LOG_LEVEL: "warn" },
    ).start();
    nc = await server.connect();
    client = new VmqClient(nc, { prefix });
    await eventually(
      async () => ((await client.hosts()).some((h) => h.host === "h1") ? true : undefined),
      30_000,
      `the worker on h1 (${worker.output.slice(-300)})`,
    );
    ui = await startUi([...conn, "--listen", "127.0.0.1:0"]);
    const { default: puppeteer } = await import("puppeteer-core");
    browser = await puppeteer.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
    });
    page = await browser.newPage();
    await page.setViewport({ width: 1280, height: 800 });
    page.on("dialog", (d) => void d.accept());
  });
  after(async () => {
    if (skipped) return;
    await browser?.close();
    ui?.proc.kill("SIGTERM");
    await ui?.proc;
    await worker?.kill("SIGTERM");
    await nc?.close();
    await server?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  // Fails under CI, skips with the reason elsewhere (required.ts); the others then skip too.
  it("runs in Debian's chromium", (t) => {
    skipWhenMissing(t, chromiumMissing);
  });

  it("the fleet page shows the live host", { skip: SKIP }, async () => {
    await page.goto(`${ui.url}#/fleet`);
    await page.waitForSelector('tr[data-host="h1"]', { timeout: 15_000 });
    const row = (await page.evaluate(
      `document.querySelector('tr[data-host="h1"]').textContent`,
    )) as string;
    assert.match(row, /noop/);
    assert.match(row, /running/);
    await shot(page, "fleet");
  });

  it(
    "prepare and start from the page: events come and the VMs table updates live",
    { skip: SKIP },
    async () => {
      const watcher = await browser.newPage();
      await watcher.goto(`${ui.url}#/vms`);
      await page.goto(`${ui.url}#/vms`);
      // Filled and clicked through the DOM: puppeteer's own clicks wait for frames to paint,
      // which a background tab on a busy machine may not do for a long time.
      // (A string: tsx would wrap named inner functions in a helper the page does not have.)
      await page.evaluate(`(() => {
      const form = document.querySelector("#prepare");
      form.elements.namedItem("vmId").value = "ui-1";
      form.elements.namedItem("image").value = "images/base.qcow2";
      form.elements.namedItem("host").value = "h1";
      form.requestSubmit();
    })()`);
      await page.waitForSelector('[data-outcome="vm.prepared"]', { timeout: 30_000 });
      // The other page, never reloaded, shows the new VM from the live feed.
      await watcher.waitForSelector('tr[data-vm="ui-1"][data-state="prepared"]', {
        timeout: 10_000,
      });
      await page.goto(`${ui.url}#/vm/ui-1`);
      await page.waitForSelector('[data-act="start"]');
      await page.evaluate(`document.querySelector('[data-act="start"]').click()`);
      await page.waitForSelector('[data-outcome="vm.started"]', { timeout: 30_000 });
      await watcher.waitForSelector('tr[data-vm="ui-1"][data-state="running"]', {
        timeout: 10_000,
      });
      await page.waitForSelector('tr[data-type="vm.started"]', { timeout: 10_000 });
      const types = (await client.history("h1", "ui-1")).map((e) => e.event.type);
      assert.deepEqual(types, [
        "vm.command-accepted",
        "vm.prepared",
        "vm.command-accepted",
        "vm.started",
      ]);
      await shot(page, "vm-detail");
      await page.goto(`${ui.url}#/events`);
      await page.waitForSelector("tr[data-seq]");
      await shot(page, "events");
      await watcher.close();
    },
  );

  it("the console page echoes what is typed", { skip: SKIP }, async () => {
    const relayNc = await server.connect();
    const relay = serveConsole(relayNc, {
      host: "c1",
      names: namesFor(prefix),
      vms: {
        size: 1,
        lastSeq: 0,
        get: (id) => ({ ...emptyVm(id, "c1"), state: "running", handle: { ...HANDLE, id } }),
        has: (id) => id === "echo-1",
        all: () => [],
      },
      router: {
        openConsole: (_h, handlers) =>
          Promise.resolve({
            write: (b: Uint8Array) =>
              handlers.onData(new TextEncoder().encode(`<${Buffer.from(b).toString()}>`)),
            close: () => undefined,
          }),
      },
      log: silentLogger(),
    });
    try {
      await page.goto(`${ui.url}#/console/echo-1?host=c1`);
      await page.waitForFunction(
        `document.querySelector("#c-state")?.textContent === "connected"`,
        { timeout: 15_000 },
      );
      await page.type("#term textarea", "hello-ui");
      await page.waitForFunction(
        `(document.querySelector(".xterm-rows")?.textContent ?? "").includes("<h><e><l><l><o>")`,
        { timeout: 15_000 },
      );
      await shot(page, "console");
    } finally {
      relay.unsubscribe();
      await relayNc.close();
    }
  });

  it(
    "the DLQ page retries a dead letter, and the worker then runs it",
    { skip: SKIP },
    async () => {
      // A dead letter as the worker writes one: the command and its original subject in headers.
      const names = namesFor(prefix);
      const cmd = {
        version: 1,
        type: "vm.prepare",
        commandId: randomUUID(),
        issuedAt: new Date().toISOString(),
        vmId: "dl-1",
        spec: { name: "dl-1", imagePath: "images/base.qcow2", vcpus: 1, memoryMb: 256 },
      };
      const h = natsHeaders();
      h.set(DLQ_HEADERS.subject, names.cmd("h1", "dl-1"));
      h.set(DLQ_HEADERS.code, "command::max-deliveries");
      h.set(DLQ_HEADERS.reason, "test: gave up");
      await client.js.publish(`${prefix}.dlq.h1.dl-1`, JSON.stringify(cmd), { headers: h });
      await page.goto(`${ui.url}#/dlq`);
      await page.waitForSelector("tr[data-dlq]", { timeout: 10_000 });
      await shot(page, "dlq");
      await page.evaluate(`document.querySelector('tr[data-dlq] [data-act="retry"]').click()`);
      await page.waitForSelector('[data-done="retry"]', { timeout: 15_000 });
      await eventually(
        async () => ((await client.get("dl-1"))?.state === "prepared" ? true : undefined),
        20_000,
        "dl-1 prepared after the retry",
      );
      assert.equal((await (await client.deadLetters()).list()).length, 0);
    },
  );

  it("cross-site state changes are refused", { skip: SKIP }, async () => {
    const post = (hdrs: Record<string, string>) =>
      fetch(`${ui.url}api/vms/ui-1/stop`, {
        method: "POST",
        headers: { "Content-Type": "application/json", ...hdrs },
        body: "{}",
      });
    const evil = await post({ Origin: "http://evil.example" });
    assert.equal(evil.status, 403);
    assert.equal(((await evil.json()) as { error: { code: string } }).error.code, "ui::cross-site");
    const own = new URL(ui.url).origin;
    const noCsrf = await post({ Origin: own });
    assert.equal(noCsrf.status, 403, "same origin without the CSRF token");
    // fetch() will not set Host: a plain request, as a DNS-rebound page would send it.
    const rebound = await new Promise<number>((resolve, reject) =>
      get(`${ui.url}api/session`, { headers: { Host: "attacker.example" } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      }).on("error", reject),
    );
    assert.equal(rebound, 403, "a loopback UI refuses a foreign Host (DNS rebinding)");
    assert.equal((await client.get("ui-1"))?.state, "running", "nothing was stopped");
  });

  it(
    "a non-loopback listener needs the token and refuses requests without it",
    { skip: SKIP },
    async () => {
      const conn = ["--nats", server.url, "--prefix", prefix];
      const refused = await runVmq(["ui", ...conn, "--listen", "0.0.0.0:0"]);
      assert.equal(refused.exitCode, 2);
      assert.match(refused.stderr, /ui::token-required/);
      const token = randomUUID();
      const open = await startUi([...conn, "--listen", "0.0.0.0:0", "--ui-token", token]);
      try {
        const url = open.url.replace("0.0.0.0", "127.0.0.1");
        const none = await fetch(`${url}api/session`);
        assert.equal(none.status, 401);
        assert.equal(
          ((await none.json()) as { error: { code: string } }).error.code,
          "ui::unauthorized",
        );
        assert.equal(
          (
            await fetch(`${url}api/session`, {
              headers: { Authorization: "Bearer wrong-token-000000" },
            })
          ).status,
          401,
        );
        assert.equal(
          (await fetch(`${url}api/session`, { headers: { Authorization: `Bearer ${token}` } }))
            .status,
          200,
        );
        const p = await browser.newPage();
        await p.goto(`${url}?token=${token}#/fleet`);
        await p.waitForSelector('tr[data-host="h1"]', { timeout: 15_000 });
        await p.close();
      } finally {
        open.proc.kill("SIGTERM");
        await open.proc;
      }
    },
  );

  it(
    "1,000 VMs at ~50 changes/s: first render and update latency (measured)",
    { skip: SKIP },
    async () => {
      const kv = await new Kvm(nc).open(namesFor(prefix).vmsBucket);
      const view = (i: number, state: string) => ({
        vmId: `vm-${String(i).padStart(4, "0")}`,
        host: "bulk",
        state,
        lastEventSeq: i,
        handle: null,
        pending: null,
        updatedAt: new Date().toISOString(),
      });
      const put = (i: number, state: string) =>
        kv.put(`bulk.${view(i, state).vmId}`, JSON.stringify(view(i, state)));
      for (let i = 0; i < 1000; i += 100)
        await Promise.all(Array.from({ length: 100 }, (_, k) => put(i + k, "stopped")));
      const p = await browser.newPage();
      await p.setViewport({ width: 1280, height: 800 });
      const t0 = Date.now();
      await p.goto(`${ui.url}#/vms`);
      await p.waitForFunction(
        `Number(/of (\\d+)/.exec(document.querySelector("#shown")?.textContent ?? "")?.[1]) >= 1000 &&
          document.querySelectorAll("tr[data-vm]").length >= 50`,
        { timeout: 10_000 },
      );
      const firstRender = Date.now() - t0;
      await shot(p, "vms");
      // Background load: ~50 view changes and ~50 events per second on VMs off the first page.
      let n = 0;
      const load = setInterval(() => {
        for (let k = 0; k < 5; k++) {
          const i = 500 + (n++ % 500);
          void put(i, n % 2 ? "running" : "stopped");
          const e = {
            version: 1,
            type: "vm.state-observed",
            eventId: randomUUID(),
            vmId: view(i, "x").vmId,
            host: "bulk",
            at: new Date().toISOString(),
            causationId: null,
            state: "running",
            observed: "running",
            previous: "stopped",
            source: "reconcile",
          };
          void client.js.publish(`${prefix}.evt.bulk.${e.vmId}`, JSON.stringify(e));
        }
      }, 100);
      const latencies: number[] = [];
      try {
        for (let s = 0; s < 15; s++) {
          const vm = view(s % 10, "x").vmId; // on the first page, sorted by id
          const state = s % 2 ? "running" : "suspended";
          const seen = p.evaluate(`new Promise((resolve) => {
          const obs = new MutationObserver(() => {
            if (document.querySelector('tr[data-vm="${vm}"]')?.getAttribute("data-state") === "${state}") {
              obs.disconnect();
              resolve(Date.now());
            }
          });
          obs.observe(document.getElementById("rows"), { childList: true, subtree: true, attributes: true });
        })`) as Promise<number>;
          await new Promise((r) => setTimeout(r, 50)); // the observer is in place
          const sent = Date.now();
          await put(s % 10, state);
          latencies.push((await seen) - sent);
        }
      } finally {
        clearInterval(load);
        await p.close();
      }
      latencies.sort((a, b) => a - b);
      const median = latencies[Math.floor(latencies.length / 2)] ?? 0;
      const max = latencies.at(-1) ?? 0;
      process.stdout.write(
        `# ui: 1,000 VMs: first render ${firstRender} ms; update latency median ${median} ms, max ${max} ms (goal: < 1000 ms, < 250 ms)\n`,
      );
      assert.ok(firstRender < 5_000, `first render took ${firstRender} ms`);
      assert.ok(max < 5_000, `an update took ${max} ms`);
    },
  );
});
