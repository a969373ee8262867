import type { HostRecord, VmSpecInput } from "../contracts/index.js";
import { VmqError } from "../lib/errors.js";
import { sealUserData } from "../lib/user-data.js";

export interface SealOptions {
  /**
   * Send plaintext user-data to a host whose worker publishes no key (a worker older than
   * sealing). The worker then records only its digest, but the commands stream keeps it.
   */
  plaintextUserData?: boolean;
}

/**
 * The spec to send to `host`: plaintext user-data sealed to the key in the host's record, so
 * that only that host's worker can open it. A host without a key is `userdata::no-host-key`
 * unless plaintext is asked for. Call it after placement has picked the host.
 */
export async function sealSpecFor(
  hosts: () => Promise<HostRecord[]>,
  host: string,
  spec: VmSpecInput,
  opts: SealOptions = {},
): Promise<VmSpecInput> {
  const ci = spec.cloudInit;
  if (ci?.userData === undefined || opts.plaintextUserData) return spec;
  const record = (await hosts()).find((h) => h.host === host);
  if (!record?.userDataKey) {
    throw new VmqError(
      "userdata::no-host-key",
      record
        ? `host ${host} publishes no key to seal user-data to (its worker is older than sealing)`
        : `host ${host} has no live host record to take the key to seal user-data from`,
    );
  }
  const { userData, ...rest } = ci;
  return {
    ...spec,
    cloudInit: { ...rest, sealedUserData: sealUserData(userData, record.userDataKey) },
  };
}
