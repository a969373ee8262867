/**
 * Every stable error code vmq uses, in one closed table: whether trying again may help (the
 * worker retries on this flag) and the hint a person reads. Codes are `area::reason`; callers
 * branch on the code, never on a message. test/unit/contracts/error-codes.test.ts proves that
 * every code in src is here, and that every entry here is used.
 */
import { HYPERVISOR_ERROR_CODES } from "./error-codes-hypervisor.js";

export interface ErrorCodeInfo {
  /** Whether the same call may succeed later without anyone changing anything. */
  retryable: boolean;
  hint: string;
  /** Named by the wire contract although nothing in this version raises it (why, in words). */
  reserved?: string;
}

export const ERROR_CODES = {
  // ---- commands on the wire (rejections, DLQ) --------------------------------------------
  "command::not-json": { retryable: false, hint: "Publish the command as UTF-8 JSON." },
  "command::too-large": {
    retryable: false,
    hint: "Commands are at most 64 KiB; keep large cloud-init data small.",
  },
  "command::expired": {
    retryable: false,
    hint: "It waited in the queue past its notAfter (the worker was down or busy); send it again if it still matters.",
  },
  "command::cancelled": {
    retryable: false,
    hint: "Someone cancelled it (vmq cancel) before its worker took it; send it again if it still matters.",
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

  // ---- VMs and the worker's answers -------------------------------------------------------
  "vm::exists": { retryable: false, hint: "Destroy the VM first, or choose another vmId." },
  "vm::evacuated": {
    retryable: false,
    hint: "The VM was evacuated from this host to another one (vmq evacuate); send its commands to the host vmq get names.",
  },
  "vm::moving": {
    retryable: false,
    hint: "A move (vmq move) is taking the VM to another host: wait for it to finish, or undo it (vmq move with --abort), then send the command again.",
  },
  "vm::not-found": { retryable: false, hint: "Prepare the VM first; check the host and vmId." },
  "vm::no-handle": {
    retryable: false,
    hint: "The VM has not been prepared yet: it has no address or console until it is.",
  },
  "query::unknown": {
    retryable: false,
    hint: "Ask one of the known queries: get, state, guest-ip, console.",
  },
  "console::unavailable": {
    retryable: false,
    hint: "The VM's backend has no serial console, or it could not be opened; check the VM runs.",
  },
  "console::not-running": {
    retryable: false,
    hint: "A VM's serial console exists only while it runs: start it first (vmq start <vmId>).",
  },
  "worker::interrupted": {
    retryable: true,
    hint: "The worker restarted during the command; its effect was read back from the backend.",
  },
  "worker::data-dir-locked": {
    retryable: false,
    hint: "One worker per data dir: stop the process named, or give this worker a data dir of its own (--data-dir).",
  },
  "worker::data-dir-unusable": {
    retryable: false,
    hint: "Check that --data-dir can be created and written by this user, and that its path is short enough.",
  },
  "worker::http-unavailable": {
    retryable: false,
    hint: "The --http address could not be served: is the port taken by another process? Choose another, or leave --http off.",
  },
  "host::alive": {
    retryable: true,
    hint: "Its lease was renewed within its TTL (or, with no lease, its heartbeat has not expired): it is not dead. Stop its worker, or wait; --i-know-it-is-dead only for a host with no lease record.",
  },
  "host::unknown": {
    retryable: false,
    hint: "vmq hosts lists the hosts with a heartbeat; a dead host still has its lease record or its events. Check the host id's spelling.",
  },
  "host::evacuated": {
    retryable: true,
    hint: "This host was evacuated (vmq evacuate); its worker waits until the evacuation completes, then takes the lease back and removes its stale copies. Finish it with vmq evacuate <host>.",
  },
  "evacuation::conflict": {
    retryable: true,
    hint: "The host's lease record changed under the evacuation (another evacuation, or its worker took it back); run vmq evacuate again to see where it stands.",
  },
  "evacuation::no-target": {
    retryable: true,
    hint: "No live host other than the dead one can take this VM (placement); start a worker on another host and run vmq evacuate again.",
  },
  // ---- cold moves (vmq move) ---------------------------------------------------------------
  "move::in-progress": {
    retryable: true,
    hint: "Another move of this VM is under way (its record in the moves bucket is not final): wait for it, or run vmq move again with the same target to take it up.",
  },
  "move::same-host": {
    retryable: false,
    hint: "The VM already lives on that host: name another host with --to.",
  },
  "move::target-unavailable": {
    retryable: true,
    hint: "The target host has no live worker (vmq hosts), or lacks the VM's backend; start one, or pick another host.",
  },
  "move::not-movable": {
    retryable: false,
    hint: "Only a VM that is running, stopped or prepared, with nothing pending, can move; finish or destroy what it is doing first.",
  },
  "move::export-failed": {
    retryable: true,
    hint: "The disk could not be sent to the images bucket (NATS trouble, its size limit); the worker tries again.",
  },
  "move::export-unavailable": {
    retryable: false,
    hint: "This worker was started without the images bucket; start it with provisioning rights or provision the bucket (vmq check).",
  },
  "move::step-failed": {
    retryable: false,
    hint: "A step of the move failed and the move was undone (the VM is back on its source as it was); the message names the step and its code.",
  },
  "move::conflict": {
    retryable: true,
    hint: "The move's record changed under this process (another vmq move of the same VM); run vmq move again to see where it stands.",
  },
  "host::lease-lost": {
    retryable: true,
    hint: "Another worker of this host took its lease (or this one could not renew it in time); this worker stopped and its supervisor restarts it as a standby.",
  },
  "internal::unexpected": {
    retryable: false,
    hint: "An error vmq does not know; see the worker's log and report it.",
  },

  // ---- event store and NATS ---------------------------------------------------------------
  "event-store::conflict": {
    retryable: true,
    hint: "Another writer appended to the VM's stream first; vmq re-reads it and decides again.",
  },
  "event-store::append-failed": {
    retryable: true,
    hint: "JetStream did not take the event; check the server and the VMQ_EVENTS stream.",
  },
  "event-store::replay-stalled": {
    retryable: true,
    hint: "Reading the event history kept stopping short; check the NATS server's health.",
  },
  "event-store::unreadable-event": {
    retryable: false,
    hint: "A newer vmq wrote it, or an upcaster is missing.",
  },
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
  "nats::closed": {
    retryable: false,
    hint: "The connection was closed while the message waited (the process is shutting down).",
  },
  "nats::no-responders": {
    retryable: true,
    hint: "No stream took the message: is JetStream enabled, and were the streams provisioned?",
  },
  "nats::timeout": {
    retryable: true,
    hint: "The server did not acknowledge in time; it may be overloaded or restarting.",
  },
  "nats::bad-reply": {
    retryable: false,
    hint: "The server's acknowledgement was malformed; check the nats-server version.",
  },
  "nats::incompatible-stream": {
    retryable: false,
    hint: "A stream exists with settings vmq cannot use: fix or remove it, or use another --prefix.",
  },
  "nats::incompatible-bucket": {
    retryable: false,
    hint: "A KV bucket exists with settings vmq cannot use: fix or remove it, or use another --prefix.",
  },
  "nats::incompatible-consumer": {
    retryable: false,
    hint: "The worker's durable consumer exists with other settings: delete it; its position is kept.",
  },
  "nats::not-provisioned": {
    retryable: false,
    hint: "No vmq worker has started with this prefix on this NATS yet; check --prefix and --nats.",
  },
  "nats::server-missing": {
    retryable: false,
    hint: "Run ./setup.sh (installs nats-server), or pass --nats nats://host:4222.",
  },
  "nats::embedded-failed": {
    retryable: false,
    hint: "The embedded nats-server did not start: is its port taken by another process? Stop it, or use --nats.",
  },

  // ---- configuration and the CLI ----------------------------------------------------------
  "config::invalid": { retryable: false, hint: "See vmq worker --help for the settings." },
  "config::unreadable-file": {
    retryable: false,
    hint: "Check the path given to the flag (or its environment variable) and its permissions.",
  },
  "config::invalid-creds": {
    retryable: false,
    hint: "Give the .creds file nsc or your operator generated for this account.",
  },
  "cli::usage": {
    retryable: false,
    hint: "See the command's --help (every one ends with examples).",
  },
  "cli::invalid-vm-id": {
    retryable: false,
    hint: "vmIds are 1-64 letters, digits, '-' or '_', starting with a letter or digit.",
  },
  "cli::invalid-host": {
    retryable: false,
    hint: "Host ids follow the vmId rules: letters, digits, '-' or '_'.",
  },
  "cli::invalid-option": { retryable: false, hint: "See the command's --help." },
  "cli::missing-host": { retryable: false, hint: "Pass --host <id>." },
  "cli::invalid-spec": {
    retryable: false,
    hint: "Give --image (and --vcpus, --memory-mb), or a --spec file; see vmq schemas.",
  },
  "cli::unreadable-file": {
    retryable: false,
    hint: "Check the file's path and permissions.",
  },
  "cli::unknown-context": {
    retryable: false,
    hint: "List the saved contexts with vmq context ls; add one with vmq context add.",
  },
  "cli::invalid-context": {
    retryable: false,
    hint: "Context names are 1-64 letters, digits, '-' or '_'; rewrite a bad file with vmq context add.",
  },
  "client::no-host": {
    retryable: false,
    hint: "Check vmq hosts: a host must be heartbeating and offer the backend asked for.",
  },
  "client::not-accepted": {
    retryable: false,
    hint: "No worker took the command in time: is the host's worker running (vmq hosts)?",
  },
  "client::outcome-timeout": {
    retryable: false,
    hint: "The command was accepted and may still finish; follow it with vmq events.",
  },
  "client::unreadable-event": {
    retryable: false,
    hint: "A newer vmq wrote it: upgrade this client, or pass onUnreadable to skip such events.",
  },
  "client::vm-unknown": {
    retryable: false,
    hint: "Pass its host explicitly, or check the vmId (vmq list).",
  },
  "client::host-unknown": {
    retryable: false,
    hint: "Check the host id (vmq hosts); pass --queue-for-unknown-host to queue for a host that has not started yet.",
  },
  "client::command-unknown": {
    retryable: false,
    hint: "No such command in the commands stream: check the commandId (it was printed when the command was published).",
  },
  "client::cancel-too-late": {
    retryable: false,
    hint: "Its worker had accepted it (or it had ended) before the cancel reached it: it ran, and its outcome is shown. Undo it with the opposite command if needed.",
  },
  "client::cancel-pending": {
    retryable: false,
    hint: "The cancel is recorded; the command is rejected with command::cancelled when its worker takes it. Follow it with vmq events.",
  },
  "dlq::not-found": { retryable: false, hint: "See vmq dlq list." },
  "dlq::no-subject": {
    retryable: false,
    hint: "The entry names no command subject; it cannot be retried, drop it (vmq dlq drop).",
  },
  "dlq::still-invalid": {
    retryable: false,
    hint: "Pass a fixed command with --payload <file>, or --force to publish it as it is.",
  },
  "dlq::already-done": {
    retryable: false,
    hint: "Add --new-command-id to run it again as a new command.",
  },
  "schemas::not-found": { retryable: false, hint: "vmq schemas lists the known schema files." },
  "ui::token-required": {
    retryable: false,
    hint: "A non-loopback --listen needs --ui-token or --ui-token-file (or VMQ_UI_TOKEN).",
  },
  "ui::unauthorized": {
    retryable: false,
    hint: "Open the UI as http://<address>/?token=<token>, or send Authorization: Bearer <token>.",
  },
  "ui::cross-site": {
    retryable: false,
    hint: "Use the UI from its own page: state changes need the same Origin and the page's CSRF token.",
  },
  "ui::not-found": { retryable: false, hint: "Check the address; the UI's pages start at /." },
  "ui::bad-request": { retryable: false, hint: "Check the request's parameters and JSON body." },
  "ui::internal": { retryable: true, hint: "See the vmq ui process's log." },

  ...HYPERVISOR_ERROR_CODES,
  // ---- cloud-init user-data sealed to its host ---------------------------------------------
  "userdata::wrong-host": {
    retryable: false,
    hint: "Seal the user-data to this host's key (its host record's userDataKey); the SDK and vmq prepare do.",
  },
  "userdata::unsealable": {
    retryable: false,
    hint: "The sealed user-data does not open with this host's key (tampered, or the host key changed); seal it again to the host's current userDataKey.",
  },
  "userdata::no-host-key": {
    retryable: false,
    hint: "The host's worker predates sealed user-data: upgrade it, or opt in to plaintext (vmq prepare --plaintext-user-data; SDK plaintextUserData: true).",
  },
  "hostkey::insecure-file": {
    retryable: false,
    hint: "The host key file must be readable by its owner only: chmod 600 <file>.",
  },
  "hostkey::invalid": {
    retryable: false,
    hint: "The host key file must hold one curve seed (SX...), as vmq writes on first start; remove it to get a new key (sealed user-data in flight can then no longer be opened).",
  },
  "cloudinit::not-opened": {
    retryable: false,
    hint: "A backend builds the seed from opened user-data: call prepare through the worker, which opens sealed user-data first.",
  },
  "network::no-free-port": {
    retryable: true,
    hint: "Every port for SSH forwarding is taken; destroy unused VMs or free ports.",
  },
  "network::ip-discovery-timeout": {
    retryable: true,
    hint: "Check the guest got a DHCP lease on the bridge (dnsmasq) and is up.",
  },
  "network::no-address": {
    retryable: true,
    hint: "The guest has no usable address yet; it may still be booting.",
  },
} as const satisfies Record<string, ErrorCodeInfo>;

/** A code of the table: the only codes vmq raises. */
export type ErrorCode = keyof typeof ERROR_CODES;

const TABLE: Readonly<Record<string, ErrorCodeInfo | undefined>> = ERROR_CODES;

export const isErrorCode = (code: string): code is ErrorCode => Object.hasOwn(ERROR_CODES, code);

export const hintFor = (code: string): string | undefined =>
  isErrorCode(code) ? TABLE[code]?.hint : undefined;

/** The table's word on retrying; a code this version does not know is not retried. */
export const retryableFor = (code: string): boolean =>
  isErrorCode(code) ? (TABLE[code]?.retryable ?? false) : false;
