/**
 * Every stable error code vmq puts on the wire (events, query replies, DLQ headers), in one
 * table, with the hint an operator reads. Codes are `area::reason`; callers branch on the
 * code, never on a message.
 */
export const ERROR_CODES = {
  "command::not-json": { retryable: false, hint: "Publish the command as UTF-8 JSON." },
  "command::too-large": {
    retryable: false,
    hint: "Commands are at most 64 KiB; keep large cloud-init data small.",
  },
  "command::invalid": {
    retryable: false,
    hint: "Check the command against schemas/commands/<type>.v1.json.",
  },
  "command::unknown-type": {
    retryable: false,
    hint: "Known types: vm.prepare, vm.start, vm.stop, vm.suspend, vm.resume, vm.destroy.",
  },
  "command::unsupported-version": {
    retryable: false,
    hint: "This worker understands command version 1.",
  },
  "command::subject-mismatch": {
    retryable: false,
    hint: "Publish to <prefix>.cmd.<host>.<vmId> with the same vmId as the body.",
  },
  "command::illegal-transition": {
    retryable: false,
    hint: "Wait for the VM to reach a state that allows this command.",
  },
  "command::version-conflict": {
    retryable: false,
    hint: "Re-read the VM (lastEventSeq) and decide again.",
  },
  "command::max-deliveries": {
    retryable: false,
    hint: "The command kept failing; see the DLQ entry's last error.",
  },
  "command::deadline-exceeded": {
    retryable: true,
    hint: "The backend did not finish in time; check the VM's state.",
  },
  "vm::exists": { retryable: false, hint: "Destroy the VM first, or choose another vmId." },
  "vm::not-found": { retryable: false, hint: "Prepare the VM first; check the host and vmId." },
  "nats::auth-failed": {
    retryable: false,
    hint: "The server refused the credentials: check --user/--password, --token, --nkey-seed or --creds.",
  },
  "nats::tls": {
    retryable: false,
    hint: "TLS failed: check --tls-ca (the server's CA) and --tls-cert/--tls-key if the server asks for a client certificate.",
  },
  "nats::unreachable": {
    retryable: true,
    hint: "Check --nats (or VMQ_NATS_URL): is nats-server running there and reachable?",
  },
  "worker::interrupted": {
    retryable: true,
    hint: "The worker restarted during the command; its effect was read back from the backend.",
  },
  "worker::draining": {
    retryable: true,
    hint: "The worker is shutting down; the command will run when it is back.",
  },
  "hypervisor::unsupported": {
    retryable: false,
    hint: "The VM's backend cannot do this; see the host's capabilities.",
  },
  "hypervisor::backend-unavailable": {
    retryable: false,
    hint: "Start the worker with this backend configured (--backend).",
  },
  "hypervisor::invalid-state": {
    retryable: false,
    hint: "The backend's VM is not in a state for this call.",
  },
  "hypervisor::not-found": {
    retryable: false,
    hint: "The backend has no such VM; it may have been removed behind vmq's back.",
  },
  "hypervisor::timeout": { retryable: true, hint: "The backend did not answer in time." },
  "hypervisor::aborted": {
    retryable: true,
    hint: "The call was cancelled (deadline or shutdown).",
  },
  "hypervisor::stop-timeout": {
    retryable: false,
    hint: "The guest ignored the shutdown request; use force after-timeout or now.",
  },
  "hypervisor::injected": {
    retryable: true,
    hint: "A fault injected by the Noop backend for testing.",
  },
  "hypervisor::failed": { retryable: false, hint: "See the message and the backend's logs." },
  "hypervisor::invalid-path": {
    retryable: false,
    hint: "Image paths must resolve inside the configured image roots.",
  },
} as const satisfies Record<string, { retryable: boolean; hint: string }>;

export type ErrorCode = keyof typeof ERROR_CODES | `${string}::${string}`;

export const hintFor = (code: string): string | undefined =>
  (ERROR_CODES as Record<string, { hint: string } | undefined>)[code]?.hint;
