// Mutation testing of the domain, the wire contracts and the command pipeline (`npm run mutate`;
// docs/testing.md has the scores and the triage of what survives). Not part of `npm test`: it
// takes tens of minutes on 2 cores.
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = dirname(fileURLToPath(import.meta.url));
// Stryker runs the tests in a copy of the clone under .stryker-tmp/. None of its test files
// needs ../shared: the wire contract they check is the repository's own docs/wire-contract.md.

/** @type {import("@stryker-mutator/api/core").PartialStrykerOptions} */
export default {
  packageManager: "npm",
  testRunner: "tap",
  tap: {
    // Only unit tests that need no nats-server and no QEMU: each file is one node process per
    // mutant it covers, so the killers of most mutants come first (Stryker stops at the first
    // failing file).
    testFiles: [
      "test/unit/domain/vm-transitions.test.ts",
      "test/unit/domain/vm-decider.test.ts",
      "test/unit/domain/vm-events.test.ts",
      "test/unit/domain/vm-projection.test.ts",
      "test/unit/domain/vm-reconciliation.test.ts",
      "test/unit/domain/vm-rules.test.ts",
      "test/unit/domain/vm-tombstones.test.ts",
      "test/unit/contracts/contracts.test.ts",
      "test/unit/contracts/parse-command.test.ts",
      "test/unit/contracts/wire-names.test.ts",
      "test/unit/contracts/permissions.test.ts",
      "test/unit/contracts/schemas.test.ts",
      "test/unit/contracts/upcasters.test.ts",
      "test/unit/contracts/error-codes.test.ts",
      "test/unit/event-store/replay-fixtures.test.ts",
      "test/unit/worker/retry-policy.test.ts",
      "test/unit/worker/vm-streams.test.ts",
      "test/unit/worker/command-pipeline.test.ts",
      "test/unit/worker/view-projector.test.ts",
      "test/unit/worker/order-gate.test.ts",
      "test/unit/worker/pipeline-paths.test.ts",
      "test/unit/worker/pipeline-order.test.ts",
      "test/unit/worker/vm-streams-cache.test.ts",
      "test/unit/worker/vm-streams-tombstones.test.ts",
    ],
    // node's own runner prints TAP (Stryker reads it); tsx loads the TypeScript.
    nodeArgs: ["--test-reporter=tap", "-r", "{{hookFile}}", "--import", "tsx", "{{testFile}}"],
    forceBail: true,
  },
  // Per test file: a mutant runs only the files that reach it.
  coverageAnalysis: "perTest",
  mutate: [
    "src/domain/**/*.ts",
    "src/contracts/**/*.ts",
    "src/worker/pipeline/**/*.ts",
    "src/worker/state/vm-streams.ts",
  ],
  // Mutants inside log calls are skipped (scripts/stryker-ignore-logging.mjs says why).
  appendPlugins: [resolve(root, "scripts", "stryker-ignore-logging.mjs")],
  ignorers: ["vmq-logging"],
  ignorePatterns: ["dist", "coverage", "reports", ".vmq", "bench-results", "test/.cache"],
  // The machine is shared (2 cores): `npm run mutate -- --concurrency 1` to leave one free.
  concurrency: 2,
  timeoutMS: 10_000,
  reporters: ["clear-text", "progress", "html", "json"],
  htmlReporter: { fileName: "reports/mutation/mutation.html" },
  jsonReporter: { fileName: "reports/mutation/mutation.json" },
  clearTextReporter: { allowEmojis: false, logTests: false, maxTestsToLog: 0 },
  thresholds: { high: 90, low: 75, break: null },
};
