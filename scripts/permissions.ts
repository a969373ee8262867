// Prints the NATS permissions of a vmq role as a nats-server `authorization.users` entry:
//   npx tsx scripts/permissions.ts worker --host h1 [--prefix vmq] [--no-provision]
//   npx tsx scripts/permissions.ts scheduler [--prefix vmq]
// The same functions (src/contracts/permissions.ts) are tested against a real nats-server in
// test/integration/least-privilege.test.ts, and docs/security.md shows their output.
import { parseArgs } from "node:util";
import {
  permissionsConfig,
  schedulerPermissions,
  workerPermissions,
} from "../src/contracts/permissions.js";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    host: { type: "string" },
    prefix: { type: "string", default: "vmq" },
    "no-provision": { type: "boolean", default: false },
    user: { type: "string" },
  },
});
const role = positionals[0];
if (role !== "worker" && role !== "scheduler") {
  console.error(
    "usage: permissions.ts worker --host <id> [--prefix vmq] [--no-provision] | scheduler [--prefix vmq]",
  );
  process.exit(2);
}
if (role === "worker" && !values.host) {
  console.error("permissions.ts worker: --host is required");
  process.exit(2);
}
const perms =
  role === "worker"
    ? workerPermissions(values.prefix, values.host!, { provision: !values["no-provision"] })
    : schedulerPermissions(values.prefix);
const user = values.user ?? (role === "worker" ? `vmq-worker-${values.host}` : "vmq-scheduler");
console.log(
  `# nats-server: inside authorization { users: [ ... ] } (pair it with a password, nkey or TLS identity)\n{ user: ${JSON.stringify(user)}, permissions: ${permissionsConfig(perms).replace(/\n/g, "\n  ")} }`,
);
