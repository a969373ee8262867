/**
 * The web UI's gate (src/ui/auth.ts): loopback names, the token, same Origin plus the CSRF
 * token for state changes, and the user-data redaction of what the page receives.
 */
import assert from "node:assert/strict";
import type { IncomingMessage } from "node:http";
import { describe, it } from "node:test";
import {
  checkAccess,
  checkStateChange,
  isLoopback,
  makeGuard,
  type Guard,
} from "../../../src/ui/auth.js";
import { redact } from "../../../src/ui/feed.js";
import { isVmqError } from "../../../src/lib/errors.js";

const req = (headers: Record<string, string>) => ({ headers }) as unknown as IncomingMessage;
const url = (q = "") => new URL(`http://x/api/session${q}`);
const code = (f: () => void): string | undefined => {
  try {
    f();
    return undefined;
  } catch (e) {
    return isVmqError(e) ? e.code : String(e);
  }
};

describe("vmq ui's gate", () => {
  it("knows loopback addresses, and only those", () => {
    for (const h of ["127.0.0.1", "127.9.8.7", "::1", "[::1]", "localhost"])
      assert.ok(isLoopback(h), h);
    for (const h of ["0.0.0.0", "10.0.0.1", "::", "example.com", "127.0.0.1.nip.io"])
      assert.ok(!isLoopback(h), h);
  });

  it("a loopback UI refuses a foreign Host header (DNS rebinding)", () => {
    const g = makeGuard({ loopback: true });
    assert.equal(
      code(() => checkAccess(g, req({ host: "127.0.0.1:8080" }), url())),
      undefined,
    );
    assert.equal(
      code(() => checkAccess(g, req({ host: "[::1]:8080" }), url())),
      undefined,
    );
    assert.equal(
      code(() => checkAccess(g, req({ host: "evil.example:8080" }), url())),
      "ui::cross-site",
    );
  });

  it("with a token: a bearer header or ?token=, nothing else", () => {
    const g: Guard = makeGuard({ loopback: false, token: "s3cret-token-0123456789" });
    const h = { host: "10.0.0.1:8080" };
    assert.equal(
      code(() => checkAccess(g, req(h), url())),
      "ui::unauthorized",
    );
    assert.equal(
      code(() => checkAccess(g, req({ ...h, authorization: "Bearer nope" }), url())),
      "ui::unauthorized",
    );
    assert.equal(
      code(() =>
        checkAccess(g, req({ ...h, authorization: "Basic s3cret-token-0123456789" }), url()),
      ),
      "ui::unauthorized",
    );
    assert.equal(
      code(() =>
        checkAccess(g, req({ ...h, authorization: "Bearer s3cret-token-0123456789" }), url()),
      ),
      undefined,
    );
    assert.equal(
      code(() => checkAccess(g, req(h), url("?token=s3cret-token-0123456789"))),
      undefined,
    );
    assert.equal(
      code(() => checkAccess(g, req(h), url("?token=s3cret-token-012345678"))),
      "ui::unauthorized",
    );
  });

  it("a state change needs the same origin and the CSRF token", () => {
    const g = makeGuard({ loopback: true });
    const own = { host: "127.0.0.1:8080", origin: "http://127.0.0.1:8080" };
    assert.equal(
      code(() => checkStateChange(g, req({ ...own, "x-vmq-csrf": g.csrf }))),
      undefined,
    );
    assert.equal(
      code(() =>
        checkStateChange(
          g,
          req({ ...own, origin: "https://127.0.0.1:8080", "x-vmq-csrf": g.csrf }),
        ),
      ),
      undefined,
    );
    assert.equal(
      code(() => checkStateChange(g, req(own))),
      "ui::cross-site",
    );
    assert.equal(
      code(() => checkStateChange(g, req({ ...own, "x-vmq-csrf": "0".repeat(48) }))),
      "ui::cross-site",
    );
    assert.equal(
      code(() =>
        checkStateChange(g, req({ ...own, origin: "http://evil.example", "x-vmq-csrf": g.csrf })),
      ),
      "ui::cross-site",
    );
    assert.equal(
      code(() => checkStateChange(g, req({ host: own.host, "x-vmq-csrf": g.csrf }))),
      "ui::cross-site",
      "no Origin nor Referer",
    );
    assert.equal(
      code(() =>
        checkStateChange(
          g,
          req({ host: own.host, referer: "http://127.0.0.1:8080/#/vms", "x-vmq-csrf": g.csrf }),
        ),
      ),
      undefined,
    );
    assert.equal(
      code(() => checkStateChange(g, req(own), new URL(`http://x/api/console?csrf=${g.csrf}`))),
      undefined,
    );
    assert.notEqual(makeGuard({ loopback: true }).csrf, g.csrf, "a CSRF token per process");
  });

  it("user-data never reaches the page, sealed or not, at any depth", () => {
    const event = {
      type: "vm.command-accepted",
      command: {
        spec: {
          name: "a",
          userData: "#cloud-config",
          sealedUserData: { box: "x" },
          cloudInit: { userData: "p" },
        },
      },
    };
    const out = JSON.stringify(redact(event));
    assert.ok(
      !out.includes("cloud-config") && !out.includes("sealedUserData") && !out.includes('"p"'),
      out,
    );
    assert.match(out, /"name":"a"/);
  });
});
