/** Builds the 5.0.0 ensure request for one of our VMs (pure: no I/O but hashing). */
import { createHash } from "node:crypto";
import type { InstanceEnsureRequest, InstanceSpec, Component } from "./propolis-api.js";

/** A stable UUID (version-5 layout) derived from a name, so a re-ensure keeps the same id. */
export function stableUuid(namespace: string, name: string): string {
  const h = createHash("sha1").update(`${namespace}\u0000${name}`).digest();
  h[6] = ((h[6] ?? 0) & 0x0f) | 0x50;
  h[8] = ((h[8] ?? 0) & 0x3f) | 0x80;
  const x = h.subarray(0, 16).toString("hex");
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20, 32)}`;
}

export interface EnsureInput {
  vmId: string;
  name: string;
  vcpus: number;
  memoryMb: number;
  /** The boot disk as propolis-server sees it (inside the zone). */
  diskPath: string;
  /** The cloud-init NoCloud ISO as propolis-server sees it, if any. */
  seedIsoPath?: string;
  /** The VNIC handed to the zone, if any. */
  vnic?: string;
  /** Filler for the metadata Oxide's control plane would set. */
  hostLabel?: string;
}

const pci = (device: number) => ({ bus: 0, device, function: 0 });

export function buildInstanceSpec(input: EnsureInput): InstanceSpec {
  const components: Record<string, Component> = {
    com1: { type: "serial_port", component: { num: "com1" } },
    "disk0-backend": {
      type: "file_storage_backend",
      component: { path: input.diskPath, readonly: false, block_size: 512 },
    },
    disk0: {
      type: "virtio_disk",
      component: { backend_id: "disk0-backend", pci_path: pci(4) },
    },
    "boot-settings": { type: "boot_settings", component: { order: [{ id: "disk0" }] } },
  };
  if (input.seedIsoPath !== undefined) {
    components["seed-backend"] = {
      type: "file_storage_backend",
      component: { path: input.seedIsoPath, readonly: true, block_size: 512 },
    };
    components.seed = {
      type: "virtio_disk",
      component: { backend_id: "seed-backend", pci_path: pci(5) },
    };
  }
  if (input.vnic !== undefined) {
    components["net0-backend"] = {
      type: "virtio_network_backend",
      component: { vnic_name: input.vnic },
    };
    components.net0 = {
      type: "virtio_nic",
      component: {
        backend_id: "net0-backend",
        interface_id: stableUuid("vmq-nic", `${input.vmId}/net0`),
        pci_path: pci(6),
      },
    };
  }
  return {
    board: {
      cpus: input.vcpus,
      memory_mb: input.memoryMb,
      chipset: { type: "i440_fx", value: { enable_pcie: false } },
    },
    components,
  };
}

export function buildEnsureRequest(input: EnsureInput): InstanceEnsureRequest {
  const host = input.hostLabel ?? "vmq";
  return {
    properties: {
      id: stableUuid("vmq-instance", input.vmId),
      name: input.name,
      description: `vmq VM ${input.vmId}`,
      metadata: {
        silo_id: stableUuid("vmq-silo", host),
        project_id: stableUuid("vmq-project", host),
        sled_id: stableUuid("vmq-sled", host),
        sled_serial: host,
        sled_revision: 0,
        sled_model: "vmq",
      },
    },
    init: { method: "Spec", value: { spec: buildInstanceSpec(input) } },
  };
}
