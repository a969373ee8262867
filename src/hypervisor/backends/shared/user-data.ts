import type { CloudInit } from "../../../contracts/index.js";
import { HypervisorError } from "../../errors.js";

/**
 * The plaintext user-data a seed is built from. The worker opens sealed user-data before it
 * calls prepare; a spec that still holds only the sealed form (or only a digest) is refused
 * rather than seeded with nothing.
 */
export function plainUserData(ci: CloudInit): string {
  const withheld = ci.sealedUserData !== undefined || ci.userDataDigest !== undefined;
  if (ci.userData !== undefined && !withheld) return ci.userData;
  throw new HypervisorError(
    "cloudinit::not-opened",
    "the spec holds no plaintext user-data (only the sealed form or a digest) to build the seed from",
  );
}
