import { ImageName } from "../contracts/index.js";
import { commandDigest } from "./command-digest.js";

/**
 * The chunk subject tokens of an export start with this (`$O.<bucket>.C.vmqx<16 hex>...`): a
 * move finds the chunks an interrupted export of its command left behind, and removes them.
 */
export const exportChunkPrefix = (commandId: string): string => `vmqx${commandDigest(commandId)}`;

/** The image an exported disk becomes: `move-<vmId>` when that is an image name, else hashed. */
export function moveImageName(vmId: string): string {
  const plain = `move-${vmId.toLowerCase()}`;
  return ImageName.safeParse(plain).success ? plain : `move-${commandDigest(vmId)}`;
}
