/**
 * 8 bytes of a commandId's hash (64-bit FNV-1a over its UTF-16 code units, as two 32-bit lanes),
 * as 16 hex digits: how a tombstone remembers the commands of a VM whose events are purged.
 * Two different commandIds of one VM share a digest with a chance near n²/2^65 for n commands.
 */
export function commandDigest(id: string): string {
  // 64-bit FNV-1a: offset 0xcbf29ce484222325, prime 0x100000001b3, in hi/lo 32-bit halves.
  let hi = 0xcbf29ce4;
  let lo = 0x84222325;
  for (let i = 0; i < id.length; i++) {
    lo = (lo ^ id.charCodeAt(i)) >>> 0;
    // (hi:lo) * 0x100000001b3 = (hi:lo) * 0x1b3 + (lo << 40): lo << 8 lands in hi.
    const loMul = lo * 0x1b3;
    const carry = Math.floor(loMul / 0x100000000);
    const newLo = loMul >>> 0;
    hi = (Math.imul(hi, 0x1b3) + carry + (lo << 8)) >>> 0;
    lo = newLo;
  }
  return (hi >>> 0).toString(16).padStart(8, "0") + (lo >>> 0).toString(16).padStart(8, "0");
}
