/**
 * zod schemas and parsers for the files of a Cortex 0.2 bundle (cortex-0.2-facts §1):
 * `bundle.json` (kind "cortex-bundle"), `images.json` (one entry per `docker save` tar) and
 * `models/<served>/manifest.json` (one per exported model). Their real quirks are accepted: key
 * order varies, unknown keys are kept, `digests` may be empty, `cortex_version` may be "dev", and a
 * model file carries `bytes` (not `size`). Pure: text in, typed value out; errors name the file.
 */
import { z } from "zod";
import { preflightError } from "../errors.ts";
import { CORTEX_BUNDLE_KIND } from "../layout.ts";
import { normalizeBundlePath } from "./checksums.ts";
import { formatZodError } from "./release.ts";

/** 64 hex digits, either case (Python's hexdigest is lower-case; compare lower-cased). */
const Sha256Hex = z.string().regex(/^[0-9a-fA-F]{64}$/, "must be 64 hex digits")
  .transform((s) => s.toLowerCase());

/** A bundle-relative file name that cannot escape the bundle. */
const BundleFileName = z.string().min(1).refine(
  (s) => !("error" in normalizeBundlePath(s)) && !s.includes("\0"),
  "must be a relative path inside the bundle (no leading / and no ..)",
);

/** `bundle.json`. Only `kind` is checked by Cortex; `schema_version` 1 is never checked. */
export const BundleJsonSchema = z.looseObject({
  schema_version: z.number().optional(),
  kind: z.string(),
  created_at: z.string().optional(),
  /** "dev" when the exporting gateway had no CORTEX_VERSION (Admin UI). */
  cortex_version: z.string().nullable().optional(),
  source_host: z.string().nullable().optional(),
  /** Script bundles: `program bundle (scripts/prepare-offline-deployment.sh)[; optional ...]`. */
  notes: z.string().nullable().optional(),
  engine_defaults: z.record(z.string(), z.string().nullable()).optional(),
  contents: z.looseObject({
    images: z.array(z.unknown()).optional(),
    models: z.array(z.unknown()).optional(),
    /** Present (a boolean) only in script bundles. */
    wheels: z.boolean().optional(),
    program: z.boolean().optional(),
    db_dump: z.boolean().optional(),
  }).optional(),
  size_bytes: z.number().optional(),
});
export type BundleJson = z.infer<typeof BundleJsonSchema>;

/** One `images.json` entry: what was saved, from which image, into which tar. */
export const ImageEntrySchema = z.looseObject({
  ref: z.string().min(1).regex(
    /^[^\s\p{Cc}]+$/u,
    "must be an image reference (no spaces or control characters)",
  ),
  /** The writer's image ID (`docker image inspect .Id`). */
  id: z.string().regex(/^sha256:[0-9a-f]{64}$/, 'must be "sha256:" and 64 hex digits')
    .nullable().optional(),
  size_bytes: z.number().nullable().optional(),
  tar_bytes: z.number().nullable().optional(),
  sha256: Sha256Hex.nullable().optional(),
  /** RepoDigests: at most one from the script, [] for locally built cortex-* images. */
  digests: z.array(z.string()).nullable().optional(),
  /** engine, program, deps, infra. */
  role: z.string().nullable().optional(),
  file: BundleFileName,
});
export const ImagesJsonSchema = z.array(ImageEntrySchema);
export type ImageEntry = z.infer<typeof ImageEntrySchema>;

/** One model file of a manifest: `path` is relative to the models dir, `bytes` its size. */
export const ModelFileSchema = z.looseObject({
  path: z.string().min(1),
  bytes: z.number().int().nonnegative(),
  sha256: Sha256Hex.nullable().optional(),
});

/** `models/<served>/manifest.json` (type "cortex_model_export"). */
export const ModelManifestSchema = z.looseObject({
  schema_version: z.number().optional(),
  type: z.string().optional(),
  served_model_name: z.string().min(1),
  name: z.string().nullable().optional(),
  engine_type: z.string().nullable().optional(),
  engine_image: z.string().nullable().optional(),
  mode: z.string().nullable().optional(),
  repo_id: z.string().nullable().optional(),
  /** The model's folder (or file) under the models dir. */
  local_path: z.string().nullable().optional(),
  files: z.array(ModelFileSchema),
  files_included: z.boolean().optional(),
});
export type ModelManifest = z.infer<typeof ModelManifestSchema>;

function parseJson(bytes: Uint8Array | string, file: string, what: string): unknown {
  const text = typeof bytes === "string" ? bytes : new TextDecoder().decode(bytes);
  try {
    return JSON.parse(text);
  } catch (e) {
    throw preflightError(
      "bundle",
      `Cannot read ${what} "${file}": not valid JSON: ${(e as Error).message}`,
      "Re-copy the file from the transfer media.",
    );
  }
}

function validate<T extends z.ZodType>(
  schema: T,
  json: unknown,
  file: string,
  what: string,
  hint: string,
): z.infer<T> {
  const r = schema.safeParse(json);
  if (!r.success) {
    throw preflightError(
      "bundle",
      `Cannot read ${what} "${file}": ${formatZodError(r.error)}`,
      hint,
    );
  }
  return r.data;
}

const REWRITE_HINT = "Re-copy the file from the transfer media, or write the bundle again " +
  "(`make prepare-offline`, or Transfer → Export in the Admin UI).";

/**
 * Parses `bundle.json`; `kind` must be "cortex-bundle". Throws a preflight error (exit 3) naming
 * the file for invalid JSON, a wrong shape or another kind.
 */
export function parseBundleJson(bytes: Uint8Array | string, file: string): BundleJson {
  const json = parseJson(bytes, file, "bundle description");
  const kind = (json as { kind?: unknown } | null)?.kind;
  if (
    typeof json === "object" && json !== null && !Array.isArray(json) && kind !== CORTEX_BUNDLE_KIND
  ) {
    throw preflightError(
      "bundle",
      `Cannot read bundle description "${file}": its kind is ${
        kind === undefined ? "missing" : JSON.stringify(kind)
      }, a Cortex bundle's is "${CORTEX_BUNDLE_KIND}"`,
      "This folder holds something other than a Cortex bundle. Point --bundle at the folder " +
        "written by `make prepare-offline` (cortex-offline-bundle/) or by the Admin UI's Export.",
    );
  }
  return validate(BundleJsonSchema, json, file, "bundle description", REWRITE_HINT);
}

/** Parses `images.json` (an array). Throws a preflight error naming the file and field. */
export function parseImagesJson(bytes: Uint8Array | string, file: string): ImageEntry[] {
  return validate(
    ImagesJsonSchema,
    parseJson(bytes, file, "image list"),
    file,
    "image list",
    REWRITE_HINT,
  );
}

/** Parses a model's `manifest.json`. Throws a preflight error naming the file and field. */
export function parseModelManifest(bytes: Uint8Array | string, file: string): ModelManifest {
  return validate(
    ModelManifestSchema,
    parseJson(bytes, file, "model manifest"),
    file,
    "model manifest",
    REWRITE_HINT,
  );
}

/**
 * Checks a model file `path` of a manifest (relative to the models dir). Returns the normalized
 * path, or why it is refused: absolute, a `..` segment, a NUL byte, a backslash, or a top folder
 * starting with "." (hidden; cortex-install's staging folders live there).
 */
export function checkModelPath(raw: string): { path: string } | { error: string } {
  if (raw.includes("\0")) return { error: `path ${JSON.stringify(raw)} holds a NUL byte` };
  if (raw.includes("\\")) return { error: `path "${raw}" holds a backslash` };
  const n = normalizeBundlePath(raw);
  if ("error" in n) return n;
  if (n.path.startsWith(".")) return { error: `path "${raw}" starts with a hidden folder` };
  return n;
}

/**
 * The tar name Cortex gives a ref in `images/`: `/` -> `_`, `:` -> `__`, `@` -> `_at_`, `.tar`
 * (`vllm/vllm-openai:v0.28.0` -> `vllm_vllm-openai__v0.28.0.tar`).
 */
export function bundleTarName(ref: string): string {
  return `${ref.replaceAll("/", "_").replaceAll(":", "__").replaceAll("@", "_at_")}.tar`;
}

/** Whether bundle.json and the files present say the script wrote the bundle (facts §1). */
export function isScriptBundle(b: BundleJson, paths: Iterable<string>): boolean {
  if (b.notes && /prepare-offline-deployment\.sh/.test(b.notes)) return true;
  if (b.contents && "wheels" in b.contents) return true;
  for (const p of paths) if (p === "versions.env" || p.startsWith("wheels/")) return true;
  return false;
}
