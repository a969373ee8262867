import { z } from "zod";

/**
 * Images in the object store (`<prefix>-images`): a name (`base`), tags (`v1`) and a SHA-256
 * digest. References are `name:tag` or `name@sha256:<64 hex>`, as container tools write them.
 */
export const IMAGE_NAME_PATTERN = "[a-z0-9][a-z0-9._-]{0,63}";
export const IMAGE_TAG_PATTERN = "[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}";
export const IMAGE_DIGEST_PATTERN = "sha256:[0-9a-f]{64}";

export const ImageName = z
  .string()
  .regex(new RegExp(`^${IMAGE_NAME_PATTERN}$`), "must be 1-64 of a-z 0-9 . _ - (first a-z 0-9)");
export const ImageTag = z
  .string()
  .regex(new RegExp(`^${IMAGE_TAG_PATTERN}$`), "must be 1-64 of A-Z a-z 0-9 _ . - (not first . -)");
export const ImageDigest = z
  .string()
  .regex(new RegExp(`^${IMAGE_DIGEST_PATTERN}$`), "must be sha256:<64 lowercase hex>");

export const ImageRef = z
  .string()
  .regex(
    new RegExp(`^${IMAGE_NAME_PATTERN}(:${IMAGE_TAG_PATTERN}|@${IMAGE_DIGEST_PATTERN})$`),
    "must be name:tag or name@sha256:<64 hex>",
  )
  .describe("An image in the object store: name:tag or name@sha256:<64 hex>.");

export type ParsedImageRef =
  | { name: string; tag: string; digest?: undefined }
  | { name: string; digest: string; tag?: undefined };

/** Splits a reference; undefined when it is not one. */
export function parseImageRef(ref: string): ParsedImageRef | undefined {
  if (!ImageRef.safeParse(ref).success) return undefined;
  const at = ref.indexOf("@");
  if (at > 0) return { name: ref.slice(0, at), digest: ref.slice(at + 1) };
  const colon = ref.indexOf(":");
  return { name: ref.slice(0, colon), tag: ref.slice(colon + 1) };
}

/** What `image ls` / `inspect` report for one stored image (one digest of one name). */
export const ImageInfo = z.object({
  name: ImageName,
  digest: ImageDigest,
  size: z.int().min(0),
  tags: z.array(ImageTag),
  pushedAt: z.iso.datetime({ offset: true }),
});
export type ImageInfo = z.infer<typeof ImageInfo>;

/**
 * The bucket's layout (part of the wire contract): each pushed image is one object named
 * `<name>@sha256:<hex>` whose metadata `vmq-digest` repeats the digest; each tag is an object
 * `<name>:<tag>` linking to it. A push streams into `<name>@upload.<id>` and renames it.
 */
export const IMAGE_DIGEST_METADATA = "vmq-digest";
export const imageObject = (name: string, digest: string): string => `${name}@${digest}`;
export const tagObject = (name: string, tag: string): string => `${name}:${tag}`;
export const uploadObject = (name: string, id: string): string => `${name}@upload.${id}`;
