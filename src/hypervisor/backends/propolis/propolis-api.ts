/**
 * The subset of the propolis-server API 5.0.0 that vmq sends and reads, as zod schemas.
 * Written by hand from the published OpenAPI document (test/unit/propolis/openapi-contract
 * checks these shapes against it); the client and the test fake share them.
 */
import { z } from "zod";

export const PROPOLIS_API_VERSION = "5.0.0";

export const InstanceState = z.enum([
  "Creating",
  "Starting",
  "Running",
  "Stopping",
  "Stopped",
  "Rebooting",
  "Migrating",
  "Repairing",
  "Failed",
  "Destroyed",
]);
export type InstanceState = z.infer<typeof InstanceState>;

export const InstanceStateRequested = z.enum(["Run", "Stop", "Reboot"]);
export type InstanceStateRequested = z.infer<typeof InstanceStateRequested>;

const Uuid = z.uuid();
const U8 = z.int().min(0).max(255);
const U32 = z.int().min(0).max(0xffff_ffff);
const U64 = z.int().min(0);

export const InstanceMetadata = z.object({
  silo_id: Uuid,
  project_id: Uuid,
  sled_id: Uuid,
  sled_serial: z.string(),
  sled_revision: U32,
  sled_model: z.string(),
});

export const InstanceProperties = z.object({
  id: Uuid,
  name: z.string(),
  description: z.string(),
  metadata: InstanceMetadata,
});
export type InstanceProperties = z.infer<typeof InstanceProperties>;

export const PciPath = z.object({ bus: U8, device: U8, function: U8 });

/** The component kinds vmq puts in a spec (the API knows more; we never send them). */
export const Component = z.discriminatedUnion("type", [
  z.object({
    type: z.literal("serial_port"),
    component: z.strictObject({ num: z.enum(["com1", "com2", "com3", "com4"]) }),
  }),
  z.object({
    type: z.literal("file_storage_backend"),
    component: z.strictObject({ path: z.string(), readonly: z.boolean(), block_size: U32 }),
  }),
  z.object({
    type: z.literal("virtio_disk"),
    component: z.strictObject({ backend_id: z.string(), pci_path: PciPath }),
  }),
  z.object({
    type: z.literal("virtio_network_backend"),
    component: z.strictObject({ vnic_name: z.string() }),
  }),
  z.object({
    type: z.literal("virtio_nic"),
    component: z.strictObject({ backend_id: z.string(), interface_id: Uuid, pci_path: PciPath }),
  }),
  z.object({
    type: z.literal("boot_settings"),
    component: z.strictObject({ order: z.array(z.object({ id: z.string() })) }),
  }),
]);
export type Component = z.infer<typeof Component>;

export const InstanceSpec = z.object({
  board: z.strictObject({
    cpus: U8.min(1),
    memory_mb: U64.min(1),
    chipset: z.strictObject({
      type: z.literal("i440_fx"),
      value: z.strictObject({ enable_pcie: z.boolean() }),
    }),
  }),
  components: z.record(z.string(), Component),
});
export type InstanceSpec = z.infer<typeof InstanceSpec>;

export const InstanceEnsureRequest = z.object({
  properties: InstanceProperties,
  init: z.object({ method: z.literal("Spec"), value: z.object({ spec: InstanceSpec }) }),
});
export type InstanceEnsureRequest = z.infer<typeof InstanceEnsureRequest>;

export const InstanceEnsureResponse = z.object({
  migrate: z.object({ migration_id: Uuid }).nullable().optional(),
});

export const InstanceGetResponse = z.object({
  instance: z.object({ properties: InstanceProperties, state: InstanceState }),
});
export type InstanceGetResponse = z.infer<typeof InstanceGetResponse>;

const MigrationStatus = z.object({ id: Uuid, state: z.string() }).nullable().optional();

export const InstanceStateMonitorRequest = z.object({ gen: U64 });

export const InstanceStateMonitorResponse = z.object({
  gen: U64,
  state: InstanceState,
  migration: z.object({ migration_in: MigrationStatus, migration_out: MigrationStatus }),
});
export type InstanceStateMonitorResponse = z.infer<typeof InstanceStateMonitorResponse>;

export const SerialHistoryResponse = z.object({
  data: z.array(U8),
  last_byte_offset: U64,
});
export type SerialHistoryResponse = z.infer<typeof SerialHistoryResponse>;

/** dropshot's error body. */
export const ErrorBody = z.object({
  request_id: z.string(),
  error_code: z.string().optional(),
  message: z.string(),
});
export type ErrorBody = z.infer<typeof ErrorBody>;
