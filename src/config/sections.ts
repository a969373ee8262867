import { z } from "zod";

/**
 * The flat name of a section's option: <prefix><Option> (noop latencyMs: noopLatencyMs, flag
 * --noop-latency-ms), unless it already starts with the prefix (qemuBinary) or keeps an older
 * name of its own.
 */
export function flatKey(prefix: string, key: string, keep: readonly string[] = []): string {
  if (keep.includes(key)) return key;
  if (key.startsWith(prefix) && /[A-Z]/.test(key.charAt(prefix.length))) return key;
  return prefix + key.charAt(0).toUpperCase() + key.slice(1);
}

/** flatKey at the type level, so the flat schema keeps every option's own type. */
type FlatKey<P extends string, K extends string, Keep extends string> = K extends Keep
  ? K
  : K extends `${P}${Capitalize<string>}`
    ? K
    : `${P}${Capitalize<K>}`;
type FlatShape<P extends string, S, Keep extends string> = {
  [K in keyof S & string as FlatKey<P, K, Keep>]: S[K];
};

/** A section's schema with its options under their flat names. */
export function flatSection<P extends string, S extends z.ZodObject, Keep extends string = never>(
  prefix: P,
  section: S,
  keep: readonly Keep[] = [],
): z.ZodObject<FlatShape<P, S["shape"], Keep>> {
  const shape: Record<string, z.ZodType> = {};
  for (const [k, v] of Object.entries(section.shape))
    shape[flatKey(prefix, k, keep)] = v as z.ZodType;
  return z.object(shape) as unknown as z.ZodObject<FlatShape<P, S["shape"], Keep>>;
}

/** A section's options read back from the parsed flat object, under their own names. */
export function unflatSection<S extends z.ZodObject>(
  prefix: string,
  section: S,
  flat: Record<string, unknown>,
  keep: readonly string[] = [],
): z.infer<S> {
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(section.shape)) {
    const v = flat[flatKey(prefix, k, keep)];
    if (v !== undefined) out[k] = v;
  }
  return out as z.infer<S>;
}
