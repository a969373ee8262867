import { z } from "zod";

/** What an operator sets of the Noop backend (`vmq worker` flags --noop-<option>). */
export const NoopConfig = z.object({
  latencyMs: z.int().min(0).default(0).describe("Noop backend: latency of every call."),
  stateDir: z
    .string()
    .optional()
    .describe(
      "Noop backend: keep VMs in files here so they outlive the worker process (default: <data-dir>/noop).",
    ),
  ephemeral: z
    .boolean()
    .default(false)
    .describe("Noop backend: keep VMs in memory only; a restart finds them gone."),
});
export type NoopConfig = z.infer<typeof NoopConfig>;
