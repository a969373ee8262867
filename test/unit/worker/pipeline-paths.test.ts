/**
 * The command pipeline's less travelled paths, on in-memory parts with a router that records
 * what it is asked: what each backend call receives (handle, spec, stop and destroy options,
 * the deadline's signal), bad input in detail, a failure after which the backend reports
 * another state, held commands a dead worker left behind, the delays behind a command sent
 * back, the last delivery given up, and the counters the host record and metrics read.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { createCurve } from "@nats-io/nkeys";
import { parseCommand } from "../../../src/contracts/index.js";
import { emptyVm } from "../../../src/domain/index.js";
import { HypervisorError, NoopBackend } from "../../../src/hypervisor/index.js";
import { FaultyBackend } from "../../../src/hypervisor/testing/faulty-backend.js";
import { stubHandle } from "../../../src/worker/pipeline/backend-call.js";
import { sealUserData } from "../../../src/lib/user-data.js";
import { command, HOST, SPEC } from "../../helpers/pipeline-fixture.js";

import { ACK, build, enc, field, names, prepare } from "../../helpers/pipeline-spy.js";

describe("what each backend call receives", () => {
  it("prepare: the spec with the default backend filled in, recorded as such", async () => {
    const t = build();
    assert.deepEqual(await t.handle(prepare("a")), ACK);
    const call = t.router.last("prepare");
    assert.equal(call?.vmId, "a");
    assert.equal(call?.spec?.backend, "noop");
    assert.equal(call?.spec?.name, SPEC.name);
    assert.equal(t.streams.get("a").spec?.backend, "noop");
  });

  it("prepare: sealed user-data opened for the backend only; plaintext recorded as a digest", async () => {
    const t = build();
    const text = "#cloud-config\npassword: s3cret\n";
    const sealedUserData = sealUserData(text, t.hostKey.publicKey);
    await t.handle(prepare("s", { ...SPEC, cloudInit: { sealedUserData, hostname: "s" } }));
    assert.deepEqual(t.router.last("prepare")?.spec?.cloudInit, { userData: text, hostname: "s" });
    await t.handle(prepare("p", { ...SPEC, cloudInit: { userData: text } }));
    assert.equal(t.router.last("prepare")?.spec?.cloudInit?.userData, text);
    for (const vmId of ["s", "p"]) {
      const recorded = JSON.stringify(await t.events(vmId));
      assert.deepEqual(await t.types(vmId), ["vm.command-accepted", "vm.prepared"]);
      assert.ok(!recorded.includes("s3cret"), recorded);
      assert.ok(!JSON.stringify(t.streams.get(vmId)).includes("s3cret"), "nor in memory's VM");
    }
    assert.match(JSON.stringify(await t.events("s")), /"sealedUserData":\{"alg":"xkv1"/);
    assert.match(JSON.stringify(await t.events("p")), /"userDataDigest":"sha256:[0-9a-f]{64}"/);
  });

  it("prepare: user-data sealed to another key is bad input, never reaching the backend", async () => {
    const t = build();
    const spec = (key: string) => ({
      ...SPEC,
      cloudInit: { sealedUserData: sealUserData("#cloud-config\n", key) },
    });
    assert.deepEqual(await t.handle(prepare("w", spec(createCurve().getPublicKey()))), {
      kind: "term",
    });
    assert.equal(t.router.last("prepare"), undefined);
    assert.equal(t.deadLetters[0]?.code, "userdata::wrong-host");
    assert.equal(field((await t.events("w"))[0], "code"), "userdata::wrong-host");
  });

  it("every lifecycle call gets the VM's own handle and the command's deadline signal", async () => {
    const t = build();
    await t.handle(prepare("a"));
    const recorded = t.streams.get("a").handle;
    for (const type of ["vm.start", "vm.suspend", "vm.resume"] as const)
      assert.deepEqual(await t.handle(command({ type, vmId: "a" })), ACK, type);
    assert.deepEqual(
      await t.handle(command({ type: "vm.stop", vmId: "a", timeoutMs: 1_234, force: "never" })),
      ACK,
    );
    assert.deepEqual(
      await t.handle(command({ type: "vm.destroy", vmId: "a", timeoutMs: 4_321 })),
      ACK,
    );
    assert.deepEqual(t.router.ops(), ["prepare", "start", "suspend", "resume", "stop", "destroy"]);
    for (const c of t.router.calls) {
      assert.ok(c.opts?.signal instanceof AbortSignal, `${c.op} gets a signal`);
      if (c.op !== "prepare") assert.equal(c.handle?.id, "a", c.op);
    }
    assert.equal(t.router.last("start")?.handle?.workDir, recorded?.workDir);
    // A fresh stop gets its whole window and every escalation step in full (stop-schedule.ts).
    const escalation = { sigtermGraceMs: 5_000, sigkillWaitMs: 5_000 };
    assert.deepEqual(
      { ...t.router.last("stop")?.opts, signal: undefined },
      { timeoutMs: 1_234, force: "never", escalation, signal: undefined },
    );
    assert.deepEqual(
      { ...t.router.last("destroy")?.opts, signal: undefined },
      { timeoutMs: 4_321, force: "after-timeout", escalation, signal: undefined },
      "a destroy always escalates",
    );
    assert.deepEqual(await t.types("a"), [
      "vm.command-accepted",
      "vm.prepared",
      "vm.command-accepted",
      "vm.started",
      "vm.command-accepted",
      "vm.suspended",
      "vm.command-accepted",
      "vm.resumed",
      "vm.command-accepted",
      "vm.stopped",
      "vm.command-accepted",
      "vm.destroyed",
    ]);
    const stopped = (await t.events("a")).find((e) => e.type === "vm.stopped");
    assert.equal(field(stopped, "how"), "acpi", "the step the backend reports");
  });

  it("a VM whose prepare never finished is destroyed through a stub handle the backend finds by id", async () => {
    const t = build();
    t.router.throwOnce.set("prepare", new HypervisorError("hypervisor::failed", "disk full"));
    await t.handle(prepare("a", { ...SPEC, name: "web-a" }));
    assert.equal(t.streams.get("a").state, "failed");
    assert.equal(t.streams.get("a").handle, null);
    await t.handle(command({ type: "vm.destroy", vmId: "a" }));
    assert.deepEqual(t.router.last("destroy")?.handle, {
      ...stubHandle(emptyVm("a", HOST), "noop"),
      name: "web-a",
    });
  });

  it("a stub handle: the vmId as its name when there is no spec, an empty work dir", () => {
    assert.deepEqual(stubHandle(emptyVm("a", HOST), "propolis"), {
      id: "a",
      name: "a",
      backend: "propolis",
      workDir: "",
      vcpus: 1,
      memoryMb: 1024,
      network: { type: "user" },
      uefi: false,
    });
  });
});

describe("bad input in detail", () => {
  it("a fresh commandId is rejected under it, counted under its known type, dead-lettered", async () => {
    const t = build();
    const body = { ...command({ type: "vm.start", vmId: "a" }), version: 2 };
    const s = await t.handle(enc.encode(JSON.stringify(body)), { vmId: "a", delivery: 2, seq: 42 });
    assert.deepEqual(s, { kind: "term" });
    const [e] = await t.events("a");
    assert.equal(e?.type, "vm.command-rejected");
    assert.equal(field(e, "commandId"), body.commandId);
    assert.equal(e?.causationId, body.commandId);
    assert.equal(field(e, "code"), "command::unsupported-version");
    assert.equal(t.stats.commands.get("vm.start|rejected"), 1);
    assert.equal(t.stats.deadLettered, 1);
    assert.deepEqual(
      { ...t.deadLetters[0], data: undefined },
      {
        subject: names.cmd(HOST, "a"),
        data: undefined,
        headers: undefined,
        streamSeq: 42,
        code: "command::unsupported-version",
        reason: (() => {
          const p = parseCommand(JSON.stringify(body), "a");
          return p.ok ? "" : p.message;
        })(),
        attempts: 2,
      },
    );
  });

  it("an unknown type is counted as invalid, never under the client's own string", async () => {
    const t = build();
    const body = { ...command({ type: "vm.start", vmId: "a" }), type: "vm.explode" };
    await t.handle(enc.encode(JSON.stringify(body)), { vmId: "a" });
    assert.deepEqual([...t.stats.commands], [["invalid|rejected", 1]]);
  });

  it("a commandId that already has an outcome gets no second one, but is still dead-lettered", async () => {
    const t = build();
    const c = prepare("a");
    await t.handle(c);
    const again = { ...c, version: 2 };
    assert.deepEqual(await t.handle(enc.encode(JSON.stringify(again)), { vmId: "a" }), {
      kind: "term",
    });
    assert.deepEqual(await t.types("a"), ["vm.command-accepted", "vm.prepared"]);
    assert.equal(t.stats.duplicates, 1);
    assert.equal(t.deadLetters.length, 1);
  });

  it("a subject without a valid vmId records nothing, and is dead-lettered", async () => {
    const t = build();
    const s = await t.handle(enc.encode("{oops"), { subject: "vmq.cmd.h1.a.b" });
    assert.deepEqual(s, { kind: "term" });
    const all: string[] = [];
    await t.store.replay("*", 0, (e) => all.push(e.event.vmId));
    assert.deepEqual(all, []);
    assert.equal(t.deadLetters[0]?.subject, "vmq.cmd.h1.a.b");
  });
});

describe("backend failures in detail", () => {
  it("a failure after which the backend reports another state records that state first", async () => {
    const t = build();
    await t.handle(prepare("a"));
    await t.handle(command({ type: "vm.start", vmId: "a" }));
    await t.noop.vanish("a"); // the guest died behind the worker's back: the backend says stopped
    t.noop.failNext(1, "hypervisor::failed", { retryable: false, ops: ["suspend"] });
    assert.deepEqual(await t.handle(command({ type: "vm.suspend", vmId: "a" })), ACK);
    const events = await t.events("a");
    assert.deepEqual(
      events.slice(-3).map((e) => e.type),
      ["vm.command-accepted", "vm.state-observed", "vm.command-failed"],
    );
    const [, seen, failed] = events.slice(-3);
    assert.equal(seen?.eventId, "a:obs:id-1");
    assert.equal(field(seen, "detail"), "after vm.suspend failed with hypervisor::failed");
    assert.equal(failed?.state, "stopped", "the failure is recorded on the state the VM is in");
    assert.ok(
      t.router.last("state")?.opts?.signal instanceof AbortSignal,
      "the question has a timeout",
    );
    assert.equal(t.stats.total("failed"), 1);
    assert.equal(t.stats.total("succeeded"), 2);
  });

  it("a backend that cannot say what state the VM is in changes nothing", async () => {
    const t = build();
    await t.handle(prepare("a"));
    t.router.stateAnswer = new Error("unreachable");
    t.noop.failNext(1, "hypervisor::failed", { retryable: false, ops: ["start"] });
    await t.handle(command({ type: "vm.start", vmId: "a" }));
    const events = await t.events("a");
    assert.deepEqual(
      events.slice(-2).map((e) => e.type),
      ["vm.command-accepted", "vm.command-failed"],
    );
    assert.equal(events.at(-1)?.state, "prepared");
  });

  it("a failed prepare asks the backend nothing, even for a VM that had a handle", async () => {
    const t = build();
    await t.handle(prepare("a"));
    await t.handle(command({ type: "vm.destroy", vmId: "a" }));
    assert.ok(t.streams.get("a").handle, "a destroyed VM keeps its handle");
    t.noop.failNext(1, "hypervisor::failed", { retryable: false, ops: ["prepare"] });
    await t.handle(prepare("a"));
    assert.equal(t.router.ops().includes("state"), false);
    assert.equal((await t.events("a")).at(-1)?.type, "vm.command-failed");
  });

  it("a thrown error without a code is hypervisor::failed; the error's own hint is kept", async () => {
    const t = build();
    await t.handle(prepare("a"));
    t.router.throwOnce.set("start", new Error("boom"));
    await t.handle(command({ type: "vm.start", vmId: "a" }));
    const failed = (await t.events("a")).at(-1);
    assert.equal(field(failed, "code"), "hypervisor::failed");
    t.router.throwOnce.set(
      "start",
      new HypervisorError("qemu::spawn-failed", "no bridge br9", { hint: "create br9 first" }),
    );
    await t.handle(command({ type: "vm.start", vmId: "a" }));
    assert.equal(field((await t.events("a")).at(-1), "hint"), "create br9 first");
  });

  it("a call the backend reports aborted counts as the deadline's: retried while time is left", async () => {
    const t = build();
    await t.handle(prepare("a"));
    t.noop.failNext(1, "hypervisor::aborted", { retryable: false, ops: ["start"] });
    assert.deepEqual(await t.handle(command({ type: "vm.start", vmId: "a" })), ACK);
    assert.equal(t.streams.get("a").state, "running");
    assert.deepEqual(t.router.ops(), ["prepare", "start", "start"]);
  });

  it("a passed deadline says which command and which deadline", async () => {
    const t = build({ maxAttempts: 1 });
    await t.handle(prepare("a"));
    t.noop.failNext(1, "hypervisor::injected", { ops: ["start"] });
    const c = command({ type: "vm.start", vmId: "a" });
    // The intent was recorded an hour ago (by this worker, before a restart): its deadline is past.
    const old = new Date(Date.now() - 60 * 60_000);
    await t.streams.update("a", (vm) => ({
      type: "vm.command-accepted",
      version: 1,
      eventId: `a:${c.commandId}:accepted`,
      vmId: "a",
      host: HOST,
      at: old.toISOString(),
      causationId: c.commandId,
      correlationId: null,
      state: vm.state ?? "prepared",
      command: c,
      deadline: new Date(old.getTime() + 1_000).toISOString(),
    }));
    assert.deepEqual(await t.handle(c), ACK);
    const failed = (await t.events("a")).at(-1);
    assert.equal(field(failed, "code"), "command::deadline-exceeded");
    assert.match(
      String(field(failed, "message")),
      /^vm\.start did not finish by its deadline \d{4}-\d\d-\d\dT/,
    );
  });

  it("in flight while it runs, counted and timed once done", async () => {
    const t = build();
    await t.handle(prepare("a"));
    await t.handle(command({ type: "vm.start", vmId: "a" }));
    t.noop.hangStop(true, "a");
    const stop = t.handle(
      command({ type: "vm.stop", vmId: "a", timeoutMs: 200, force: "after-timeout" }),
    );
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(t.stats.inFlight, 1);
    assert.deepEqual(await stop, ACK);
    assert.equal(t.stats.inFlight, 0);
    assert.deepEqual(
      t.durations.map(([type]) => type),
      ["vm.prepare", "vm.start", "vm.stop"],
    );
    for (const [type, ms] of t.durations) assert.ok(ms >= 0 && ms < 10_000, `${type}: ${ms} ms`);
    assert.ok((t.durations.at(-1)?.[1] ?? 0) >= 150, "the stop waited out its timeout");
  });
});

describe("a resumed stop or destroy", () => {
  for (const type of ["vm.stop", "vm.destroy"] as const) {
    it(`${type}: its redelivery gets what is left of its window, not the whole window again`, async () => {
      const t = build({ maxAttempts: 1 });
      await t.handle(prepare("a"));
      await t.handle(command({ type: "vm.start", vmId: "a" }));
      // The first delivery fails transiently: the intent stays, JetStream redelivers it later.
      t.router.throwOnce.set(
        type === "vm.stop" ? "stop" : "destroy",
        new HypervisorError("hypervisor::unreachable", "backend away"),
      );
      const c =
        type === "vm.stop"
          ? command({ type, vmId: "a", timeoutMs: 3_000, force: "after-timeout" })
          : command({ type, vmId: "a", timeoutMs: 3_000 });
      const first = (await t.handle(c, { seq: 100 })) as { kind: string; delayMs?: number };
      assert.equal(first.kind, "nak");
      const since = Date.parse(t.streams.get("a").pending?.since ?? "");
      // JetStream redelivers it after the nak's delay (the order gate holds it until then).
      await new Promise((r) => setTimeout(r, Math.max(300, (first.delayMs ?? 0) + 50)));
      const before = Date.now();
      assert.deepEqual(await t.handle(c, { delivery: 2, seq: 100 }), ACK);
      const opts = t.router.last(type === "vm.stop" ? "stop" : "destroy")?.opts as
        { timeoutMs: number; escalation: { sigtermGraceMs: number } } | undefined;
      const elapsed = before - since;
      assert.ok(elapsed >= 300, `${elapsed} ms since acceptance`);
      assert.ok(
        (opts?.timeoutMs ?? Infinity) <= 3_000 - elapsed,
        `window ${opts?.timeoutMs} ms after ${elapsed} ms`,
      );
      assert.ok((opts?.timeoutMs ?? 0) > 0, "some of the window is left");
      assert.equal(opts?.escalation.sigtermGraceMs, 5_000, "the escalation steps stay whole");
      const outcome = type === "vm.stop" ? "vm.stopped" : "vm.destroyed";
      assert.equal((await t.types("a")).at(-1), outcome);
    });
  }
});

describe("host checks", () => {
  it("a redelivered command that already has its outcome is a duplicate, whatever the host says now", async () => {
    const t = build();
    const c = prepare("a");
    await t.handle(c);
    t.fleet.owner = "h2"; // the view now says another host holds it
    assert.deepEqual(await t.handle(c, { delivery: 2 }), ACK);
    assert.deepEqual(await t.types("a"), ["vm.command-accepted", "vm.prepared"]);
  });

  it("only a prepare asks the fleet view", async () => {
    const t = build();
    await t.handle(prepare("a"));
    await t.handle(command({ type: "vm.start", vmId: "a" }));
    assert.deepEqual(t.fleet.asked, ["a"]);
  });

  it("suspend is refused by a backend that cannot, and runs on one that can", async () => {
    const no = build({ noop: new FaultyBackend(new NoopBackend({ suspend: false })) });
    await no.handle(prepare("a"));
    await no.handle(command({ type: "vm.start", vmId: "a" }));
    await no.handle(command({ type: "vm.suspend", vmId: "a" }));
    assert.equal(field((await no.events("a")).at(-1), "code"), "hypervisor::unsupported");
    const yes = build();
    await yes.handle(prepare("a"));
    await yes.handle(command({ type: "vm.start", vmId: "a" }));
    await yes.handle(command({ type: "vm.suspend", vmId: "a" }));
    assert.equal(yes.streams.get("a").state, "suspended");
  });
});
