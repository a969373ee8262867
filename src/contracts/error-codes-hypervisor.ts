/**
 * The hypervisors' part of the one error-code table (src/contracts/error-codes.ts spreads it
 * in): backends, images, disks, zones and networks. Kept apart only for the file's length.
 */
export const HYPERVISOR_ERROR_CODES = {
  // ---- hypervisors --------------------------------------------------------------------------
  "hypervisor::unsupported": {
    retryable: false,
    hint: "The VM's backend cannot do this; see the host's capabilities.",
  },
  "hypervisor::backend-unavailable": {
    retryable: false,
    hint: "Start the worker with this backend configured (--backend), and its tools installed.",
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
  "hypervisor::unreachable": {
    retryable: true,
    hint: "The hypervisor could not be reached (or its backend is shutting down); try again.",
  },
  "hypervisor::injected": {
    retryable: true,
    hint: "A fault injected on purpose by a test (the fault-injecting backend).",
  },
  "hypervisor::failed": { retryable: false, hint: "See the message and the backend's logs." },
  "hypervisor::invalid-path": {
    retryable: false,
    hint: "Paths and names must be plain and resolve inside the configured roots.",
  },
  "qemu::kvm-unavailable": {
    retryable: false,
    hint: "Load the kvm module and give the worker read-write access to /dev/kvm, or use accelerator auto/tcg.",
  },
  "qemu::spawn-failed": {
    retryable: false,
    hint: "Install qemu-system-x86 (and check /dev/kvm access when using KVM); see console.log in the work dir.",
  },
  "qemu::uefi-unavailable": {
    retryable: false,
    hint: "Install the ovmf package or set ovmfCode/ovmfVars.",
  },
  "qemu::qmp-connect-failed": {
    retryable: true,
    hint: "QEMU may have exited or not be ready yet; check the VM's state and console.log in its work dir.",
  },
  "qemu::qmp-command-failed": {
    retryable: false,
    hint: "QEMU refused the command; the message carries its reason.",
  },
  "propolis::unreachable": {
    retryable: true,
    hint: "propolis-server did not answer; check the VM's zone is running.",
  },
  "propolis::busy": {
    retryable: true,
    hint: "propolis-server is still initializing; it is asked again.",
  },
  "propolis::timeout": {
    retryable: true,
    hint: "The instance did not reach the expected state in time; check it with the state query.",
  },
  "propolis::server-error": {
    retryable: true,
    hint: "propolis-server failed the request; see its log in the VM's zone.",
  },
  "propolis::api-version": {
    retryable: false,
    hint: "propolis-server rejects the pinned api-version; run a server that supports it.",
  },
  "propolis::bad-request": {
    retryable: false,
    hint: "propolis-server refused the request as malformed; the message carries its reason.",
  },
  "propolis::bad-response": {
    retryable: false,
    hint: "propolis-server answered something vmq does not understand; check its version.",
  },
  "propolis::invalid-state": {
    retryable: false,
    hint: "The instance is not in a state for this request.",
  },
  "propolis::gone": {
    retryable: false,
    hint: "The instance was torn down (or migrated away) while vmq used it.",
  },
  "propolis::no-instance": {
    retryable: false,
    hint: "propolis-server runs but holds no instance yet.",
  },
  "propolis::start-failed": {
    retryable: false,
    hint: "The instance did not reach Running; see propolis-server's log in the VM's zone.",
  },
  "propolis::launch-failed": {
    retryable: false,
    hint: "propolis-server could not be launched; check its binary and the zone's brand.",
  },
  "propolis::not-configured": {
    retryable: false,
    hint: "Set --propolis-address-range, --propolis-control-link and --propolis-bootrom-path (docs/propolis.md).",
  },
  "propolis::no-free-address": {
    retryable: true,
    hint: "Every address of --propolis-address-range is held by a VM; widen it or destroy unused VMs.",
  },
  "zone::command-failed": {
    retryable: false,
    hint: "A zone or link tool (zonecfg, zoneadm, zlogin, dladm) failed; the message carries its output.",
  },
  "zone::bad-output": {
    retryable: false,
    hint: "zoneadm answered something vmq cannot read; check the illumos release.",
  },
  "image::not-found": {
    retryable: false,
    hint: "Put the base image inside an image root and check the spec's imagePath, or push spec.image (vmq image ls).",
  },
  "image::not-resolved": {
    retryable: false,
    hint: "Prepare through the worker, which fetches spec.image into its image cache.",
  },
  "image::invalid-ref": {
    retryable: false,
    hint: "Use name:tag or name@sha256:<64 hex>; names are a-z 0-9 . _ - (see schemas).",
  },
  "image::digest-mismatch": {
    retryable: false,
    hint: "The stored bytes do not match the recorded digest: push the image again (vmq image push).",
  },
  "image::fetch-failed": {
    retryable: true,
    hint: "The image could not be read from the object store (NATS down, permissions); it is tried again.",
  },
  "image::cache-full": {
    retryable: true,
    hint: "The image cache is at its cap with images VMs still use: raise --image-cache-max-mb or destroy VMs.",
  },
  "image::in-use": {
    retryable: false,
    hint: "VMs not destroyed were prepared from it; a move or an evacuation of them needs it. Destroy them first, or remove it anyway with vmq image rm --force.",
  },
  "image::unsupported-backend": {
    retryable: false,
    hint: "Propolis takes images from its ZFS image dataset: give imagePath (docs/propolis.md).",
  },
  "image::store-unavailable": {
    retryable: false,
    hint: "Create the images bucket (vmq provision, or start a worker with provisioning rights).",
  },
  "image::export-failed": {
    retryable: true,
    hint: "qemu-img convert could not flatten the VM's disk (space in the data dir, a damaged overlay); the message carries its output.",
  },
  "image::overlay-failed": {
    retryable: false,
    hint: "Check the base image is a disk image QEMU can read (install qemu-utils).",
  },
  "image::disk-too-small": {
    retryable: false,
    hint: "diskGb must be at least the image's size: a ZFS volume only grows.",
  },
  "image::zfs-failed": {
    retryable: false,
    hint: "zfs failed (space, a missing snapshot, permissions); the message carries its output.",
  },
  "cloudinit::iso-failed": {
    retryable: false,
    hint: "Install genisoimage (or xorriso/mkisofs) to build the cloud-init seed.",
  },
} as const satisfies Record<string, { retryable: boolean; hint: string; reserved?: string }>;
