/**
 * The release manifest: what a Cortex release needs (assets/manifest.json, embedded in the
 * binary; `--manifest FILE` replaces it). Validated with zod; errors name the file and field.
 */
import { z } from "zod";
import { preflightError } from "../errors.ts";

const Sha256Hex = z.string().regex(/^[0-9a-f]{64}$/, "must be 64 lower-case hex digits");

export const ReleaseImageSchema = z.object({
  /** A short name used by the plan and env keys: "vllm", "llamacpp", "postgres", ... */
  role: z.string().min(1),
  /** Repository without tag, e.g. "vllm/vllm-openai" or "postgres". */
  repository: z.string().min(1),
  critical: z.boolean(),
  /** Env key that receives the shipped ref of this image (e.g. VLLM_IMAGE). */
  envKey: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/).optional(),
});

export const ReadinessSchema = z.object({
  service: z.string().min(1),
  url: z.url(),
  /** Top-level JSON fields the response body must have, e.g. {"status": "ok"}. */
  expectJson: z.record(z.string(), z.string()).optional(),
});

export const ReleaseManifestSchema = z.object({
  schema: z.literal(1),
  /** The Cortex version this release manifest describes. */
  release: z.string().min(1),
  images: z.array(ReleaseImageSchema),
  env: z.object({
    offline: z.record(z.string(), z.string()),
    online: z.record(z.string(), z.string()),
    /** Keys set to paths; values may use {modelsDir} and {hfCacheDir}. */
    paths: z.record(z.string(), z.string()),
  }),
  readiness: z.array(ReadinessSchema),
  /** sha256 pins by bundle-relative path; a pin beats checksums.sha256. */
  pins: z.record(z.string(), Sha256Hex).default({}),
});

export type ReleaseManifest = z.infer<typeof ReleaseManifestSchema>;
export type ReleaseImage = z.infer<typeof ReleaseImageSchema>;

/** Formats a zod error as `field.path: message` lines. */
export function formatZodError(err: z.ZodError): string {
  return err.issues
    .map((i) => `${i.path.length ? i.path.join(".") : "(root)"}: ${i.message}`)
    .join("; ");
}

/** Parses and validates a release manifest's text; `name` is used in errors. */
export function parseReleaseManifest(text: string, name: string): ReleaseManifest {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw preflightError(
      "bundle",
      `Cannot read release manifest "${name}": not valid JSON: ${(e as Error).message}`,
    );
  }
  const r = ReleaseManifestSchema.safeParse(json);
  if (!r.success) {
    throw preflightError(
      "bundle",
      `Cannot read release manifest "${name}": ${formatZodError(r.error)}`,
      "Fix the file or run without --manifest to use the embedded one.",
    );
  }
  return r.data;
}

export const EMBEDDED_MANIFEST_URL = new URL("../../assets/manifest.json", import.meta.url);

/** Loads `--manifest FILE` or the embedded assets/manifest.json. */
export async function loadReleaseManifest(file?: string): Promise<ReleaseManifest> {
  if (file) {
    let text: string;
    try {
      text = await Deno.readTextFile(file);
    } catch (e) {
      throw preflightError(
        "bundle",
        `Cannot read release manifest "${file}": ${(e as Error).message}`,
      );
    }
    return parseReleaseManifest(text, file);
  }
  return parseReleaseManifest(await Deno.readTextFile(EMBEDDED_MANIFEST_URL), "embedded manifest");
}

/** `docker.io/library/postgres:16` and `postgres:16` are the same; returns the short form. */
export function normalizeRef(ref: string): string {
  let r = ref.trim();
  for (const p of ["docker.io/library/", "index.docker.io/library/", "docker.io/"]) {
    if (r.startsWith(p)) {
      r = r.slice(p.length);
      break;
    }
  }
  return r;
}

/** Splits a ref into repository and tag (`latest` when none); digests stay with the repository. */
export function splitRef(ref: string): { repository: string; tag: string } {
  const r = normalizeRef(ref);
  if (r.includes("@")) return { repository: r.split("@")[0], tag: "" };
  const slash = r.lastIndexOf("/");
  const colon = r.lastIndexOf(":");
  if (colon > slash) return { repository: r.slice(0, colon), tag: r.slice(colon + 1) };
  return { repository: r, tag: "latest" };
}

/** The release image whose repository matches this ref, if any. */
export function matchReleaseImage(m: ReleaseManifest, ref: string): ReleaseImage | undefined {
  const { repository } = splitRef(ref);
  return m.images.find((i) => normalizeRef(i.repository) === repository);
}

/** Cortex's own loader rule: refs with vllm, llama, postgres or redis are critical. */
export function cortexCritical(ref: string): boolean {
  return /vllm|llama|postgres|redis/i.test(ref);
}
