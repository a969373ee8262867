/**
 * How every backend resolves its options: one object of defaults next to the options
 * interface, applied here, so no default hides in a `??` deep inside a method.
 */

/** The options once resolved: every defaulted one is present, the rest as given. */
export type Resolved<O, D> = Omit<O, keyof D> & {
  [K in keyof D & keyof O]-?: Exclude<O[K], undefined>;
};

/** `given` over `defaults`; an option given as undefined takes its default too. */
export function resolveOptions<O extends object, D extends Partial<O>>(
  defaults: D,
  given: O,
): Resolved<O, D> {
  const out: Record<string, unknown> = { ...defaults };
  for (const [k, v] of Object.entries(given)) if (v !== undefined) out[k] = v;
  return out as Resolved<O, D>;
}
