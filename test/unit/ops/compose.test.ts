/**
 * The Docker files are product deliverables, but no test may need a Docker engine: these tests
 * parse them and check that they agree with the CLI's real flags and the config schema.
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { parse } from "yaml";
import { configFromFlags, flagSpecs } from "../../../src/cli/config-flags.js";
import { WorkerConfig } from "../../../src/config/config.js";

const ROOT = join(import.meta.dirname, "..", "..", "..");
interface Service {
  command?: string[];
  entrypoint?: string[];
  environment?: Record<string, string>;
  profiles?: string[];
  devices?: string[];
  depends_on?: Record<string, { condition?: string }> | string[];
  volumes?: string[];
  ports?: string[];
  group_add?: string[];
  healthcheck?: { test?: string[] };
  build?: unknown;
  image?: string;
}
const compose = parse(readFileSync(join(ROOT, "docker-compose.yml"), "utf8"), { merge: true }) as {
  services: Record<string, Service>;
  volumes?: Record<string, unknown>;
};
const services = compose.services;
const workers = Object.entries(services).filter(([, s]) => s.command?.[0] === "worker");
const envNames = new Set(flagSpecs().map((f) => f.env));

describe("docker-compose.yml", () => {
  it("runs a 3-node NATS JetStream cluster whose nodes route to each other", () => {
    const nodes = ["n1", "n2", "n3"];
    for (const n of nodes) {
      const cmd = services[n]?.command ?? [];
      assert.ok(cmd.includes("-js"), `${n} has JetStream`);
      const routes = cmd[cmd.indexOf("--routes") + 1] ?? "";
      for (const other of nodes.filter((x) => x !== n))
        assert.ok(routes.includes(`nats://${other}:6222`), `${n} routes to ${other}`);
      // The store dir is a named volume: a recreated container keeps the streams.
      const store = cmd[cmd.indexOf("-sd") + 1] ?? "";
      const vol = (services[n]?.volumes ?? []).find((v) => v.endsWith(`:${store}`));
      assert.ok(vol, `${n} keeps ${store} on a volume`);
      assert.ok(compose.volumes && vol.split(":")[0]! in compose.volumes, `${vol} is declared`);
    }
  });

  it("has two always-on workers on distinct host ids, plus a KVM variant behind a profile", () => {
    const onByDefault = workers.filter(([, s]) => !s.profiles);
    assert.equal(onByDefault.length, 2);
    const hosts = workers.map(([, s]) => s.environment?.VMQ_HOST);
    assert.equal(new Set(hosts).size, hosts.length, "host ids are distinct");
    const kvm = workers.find(([, s]) => s.environment?.VMQ_BACKEND === "qemu");
    assert.ok(kvm?.[1].devices?.includes("/dev/kvm:/dev/kvm"), "the QEMU worker gets /dev/kvm");
  });

  it("gives workers only environment variables the CLI really reads, with valid values", () => {
    for (const [name, s] of workers) {
      for (const key of Object.keys(s.environment ?? {}))
        assert.ok(envNames.has(key), `${name}: ${key} is a real vmq worker setting`);
      const parsed = WorkerConfig.safeParse(configFromFlags({}, s.environment ?? {}));
      assert.ok(parsed.success, `${name}: ${parsed.success ? "" : parsed.error.message}`);
      assert.equal(parsed.data.replicas, 3, `${name} replicates streams on the 3 nodes`);
      assert.ok(parsed.data.nats?.split(",").length === 3, `${name} knows all 3 NATS nodes`);
    }
  });

  it("runs a one-shot demo scheduler whose script exists", () => {
    const demo = services.demo;
    assert.ok(demo?.entrypoint);
    const script = demo.entrypoint.find((a) => a.endsWith(".mjs"));
    assert.ok(script && existsSync(join(ROOT, script)));
    assert.ok(
      Object.keys(demo.environment ?? {}).every(
        (k) => envNames.has(k) || k === "VMQ_PREFIX" || k === "DEMO_IMAGE",
      ),
    );
  });
});

describe("docker-compose.yml, as it runs", () => {
  const dockerfile = readFileSync(join(ROOT, "Dockerfile"), "utf8");
  const imageHealthy = /^HEALTHCHECK /m.test(dockerfile);
  const healthy = (name: string): boolean => {
    const s = services[name];
    if (s?.healthcheck?.test?.length) return true;
    // A service built from this Dockerfile has its HEALTHCHECK.
    return s?.build !== undefined && imageHealthy;
  };

  it("starts nothing before what it depends on is healthy", () => {
    for (const [name, s] of Object.entries(services)) {
      if (!s.depends_on) continue;
      assert.ok(!Array.isArray(s.depends_on), `${name}: depends_on with conditions, not a list`);
      for (const [dep, how] of Object.entries(s.depends_on)) {
        assert.ok(services[dep], `${name} depends on ${dep}, a service`);
        assert.equal(how.condition, "service_healthy", `${name} waits for ${dep} to be healthy`);
        assert.ok(healthy(dep), `${dep} has a healthcheck`);
      }
    }
  });

  it("NATS's healthcheck asks the monitoring port each node serves", () => {
    for (const n of ["n1", "n2", "n3"]) {
      const cmd = services[n]?.command ?? [];
      const port = cmd[cmd.indexOf("-m") + 1];
      assert.ok(cmd.includes("-m") && port, `${n} serves monitoring`);
      assert.ok(services[n]?.healthcheck?.test?.some((a) => a.includes(`:${port}/healthz`)));
    }
  });

  it("publishes NATS and the workers' metrics on the ports its header and the README name", () => {
    const header = readFileSync(join(ROOT, "docker-compose.yml"), "utf8");
    const readme = readFileSync(join(ROOT, "README.md"), "utf8");
    const published = Object.values(services).flatMap((s) => s.ports ?? []);
    assert.ok(published.includes("4222:4222"), "NATS client port");
    for (const [name, s] of workers.filter(([, w]) => !w.profiles)) {
      const http = s.environment?.VMQ_HTTP?.replace(":", "") ?? "";
      const port = s.ports?.find((p) => p.endsWith(`:${http}`));
      assert.ok(port, `${name} publishes its metrics port ${http}`);
      const hostPort = port.split(":")[0] ?? "";
      assert.match(header, new RegExp(`${name}'s metrics/health on ${hostPort}|on ${hostPort}`));
      assert.ok(readme.includes(hostPort), `README names port ${hostPort}`);
    }
  });

  it("lets the KVM worker open /dev/kvm (group_add) and builds every image it names", () => {
    const kvm = workers.find(([, s]) => s.devices?.some((d) => d.startsWith("/dev/kvm")));
    assert.ok(
      kvm?.[1].group_add?.some((g) => /KVM_GID|kvm/.test(g)),
      "joins the kvm group",
    );
    const built = new Set(
      Object.values(services)
        .filter((s) => s.build !== undefined)
        .map((s) => s.image),
    );
    for (const [name, s] of Object.entries(services))
      if (s.image?.startsWith("vmq:"))
        assert.ok(built.has(s.image) && s.build !== undefined, `${name}: ${s.image} is built here`);
  });

  it("has a .dockerignore that keeps local state out but what the Dockerfile copies in", () => {
    const ignore = readFileSync(join(ROOT, ".dockerignore"), "utf8")
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith("#"));
    for (const p of ["node_modules", "dist", ".git", ".vmq"]) assert.ok(ignore.includes(p), p);
    for (const m of dockerfile.matchAll(/^COPY (?!--from)(.+) \S+$/gm))
      for (const src of (m[1] ?? "").split(/\s+/)) {
        const top = src.split("/")[0] ?? "";
        assert.ok(!ignore.includes(top) && !ignore.includes(src), `${src} is not ignored`);
      }
  });
});

describe("Dockerfile", () => {
  const text = readFileSync(join(ROOT, "Dockerfile"), "utf8");
  it("is multi-stage, runs as a non-root user, and checks health on the port it serves", () => {
    assert.ok((text.match(/^FROM /gm) ?? []).length >= 2, "multi-stage");
    assert.match(text, /^USER vmq$/m);
    const port = /VMQ_HTTP=:(\d+)/.exec(text)?.[1];
    assert.ok(port, "serves metrics and health");
    assert.match(text, new RegExp(`^EXPOSE ${port}$`, "m"));
    assert.match(text, new RegExp(`HEALTHCHECK[\\s\\S]*127\\.0\\.0\\.1:${port}/healthz`));
    assert.match(text, /ENTRYPOINT \["node", "dist\/cli\/main\.js"\]/);
  });
  it("copies only files that exist", () => {
    for (const m of text.matchAll(/^COPY (?!--from)(\S+)/gm)) {
      const src = m[1] ?? "";
      assert.ok(existsSync(join(ROOT, src)), `${src} exists`);
    }
    for (const v of ["VMQ_HTTP", "VMQ_DATA_DIR"])
      assert.ok(envNames.has(v), `${v} is a real setting`);
  });
});
