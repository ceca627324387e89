/**
 * zod schemas and parsers for the manifests found in bundles: the script package's
 * `manifest.json` (`make prepare-offline`), the Admin-UI export's `manifest.json` (settings), and
 * the `manifest.json` inside a `docker save` tar.
 */
import { z } from "zod";
import { preflightError } from "../errors.ts";
import { formatZodError } from "./release.ts";
import { normalizeBundlePath } from "./checksums.ts";

/** A bundle-relative file name that cannot escape the bundle. */
const BundleFileName = z.string().min(1).refine(
  (s) => !("error" in normalizeBundlePath(s)),
  "must be a relative path inside the bundle (no leading / and no ..)",
);

/** An engine entry: `name` is untagged; the tag sits in `version` (vLLM) or `tag` (llama.cpp). */
/** An image name or ref: no whitespace or control characters (they are not refs, and print badly). */
const RefText = z.string().min(1).regex(
  /^[^\s\p{Cc}]+$/u,
  "must be an image reference (no spaces or control characters)",
);

export const ScriptEngineSchema = z.looseObject({
  name: RefText,
  version: z.string().min(1).optional(),
  tag: z.string().min(1).optional(),
  file: BundleFileName,
  purpose: z.string().optional(),
});

/** An infrastructure entry: `name` is the full ref, except dcgm-exporter which has no tag. */
export const ScriptInfraSchema = z.looseObject({
  name: RefText,
  file: BundleFileName,
  purpose: z.string().optional(),
});

/** `manifest.json` of a `make prepare-offline` package. Unknown keys are kept. */
export const ScriptManifestSchema = z.looseObject({
  created: z.string().optional(),
  cortex_version: z.string().optional(),
  prepared_by: z.string().optional(),
  images: z.looseObject({
    engines: z.array(ScriptEngineSchema).default([]),
    infrastructure: z.array(ScriptInfraSchema).default([]),
  }),
  deployment_notes: z.unknown().optional(),
});

export type ScriptManifest = z.infer<typeof ScriptManifestSchema>;
export type ScriptEngine = z.infer<typeof ScriptEngineSchema>;
export type ScriptInfra = z.infer<typeof ScriptInfraSchema>;
export type ScriptEntry = ScriptEngine | ScriptInfra;

/** Settings keys an Admin-UI export carries; their presence marks an Admin-UI manifest. */
export const ADMIN_SETTINGS_KEYS = [
  "VLLM_IMAGE",
  "LLAMACPP_IMAGE",
  "CORTEX_MODELS_DIR",
  "CORTEX_MODELS_DIR_HOST",
  "HF_CACHE_DIR",
  "HF_CACHE_DIR_HOST",
  "OFFLINE_MODE",
] as const;

const SettingValue = z.union([z.string(), z.number(), z.boolean(), z.null()]);
const SETTINGS_KEY_RE = /^[A-Z][A-Z0-9_]*$/;
/** A settings key of the `settings` object: it becomes a .env key. */
const ENV_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * `manifest.json` of an Admin-UI export. Settings may sit at the top level or under `settings`;
 * each known settings key must be a scalar wherever it sits.
 */
export const AdminManifestSchema = z.looseObject({
  settings: z.record(z.string(), SettingValue).optional(),
  cortex_version: z.string().optional(),
  VLLM_IMAGE: SettingValue.optional(),
  LLAMACPP_IMAGE: SettingValue.optional(),
  CORTEX_MODELS_DIR: SettingValue.optional(),
  CORTEX_MODELS_DIR_HOST: SettingValue.optional(),
  HF_CACHE_DIR: SettingValue.optional(),
  HF_CACHE_DIR_HOST: SettingValue.optional(),
  OFFLINE_MODE: SettingValue.optional(),
}).refine(
  (m) => hasAdminSettings(m),
  `no settings found (expected ${ADMIN_SETTINGS_KEYS.join(", ")} at the top level or under ` +
    '"settings")',
);

/** The parsed Admin-UI manifest: the raw object plus the settings flattened to strings. */
export interface AdminManifest {
  raw: Record<string, unknown>;
  cortexVersion?: string;
  /** Settings keys to string values; booleans become `True`/`False` (Cortex's spelling). */
  settings: Record<string, string>;
}

/** `manifest.json` inside a `docker save` tar. */
export const DockerSaveManifestSchema = z.array(
  z.looseObject({
    Config: z.string().min(1),
    RepoTags: z.array(z.string()).nullable().optional(),
    Layers: z.array(z.string()),
  }),
);
export type DockerSaveManifest = z.infer<typeof DockerSaveManifestSchema>;

/** Whether a parsed JSON value looks like an Admin-UI manifest (has a known settings key). */
export function hasAdminSettings(json: unknown): boolean {
  if (!isRecord(json)) return false;
  const settings = isRecord(json.settings) ? json.settings : {};
  return ADMIN_SETTINGS_KEYS.some((k) => k in json || k in settings);
}

/** Whether a parsed JSON value looks like a script manifest (has an `images` object). */
export function isScriptManifestShape(json: unknown): boolean {
  return isRecord(json) && isRecord(json.images) &&
    ("engines" in json.images || "infrastructure" in json.images);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function parseJson(text: string, fileName: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw preflightError(
      "bundle",
      `Cannot read ${what} "${fileName}": not valid JSON: ${(e as Error).message}`,
      "Re-copy the file from the transfer media.",
    );
  }
}

/** Parses and validates a script package's `manifest.json`; errors name the file and field. */
export function parseScriptManifest(text: string, fileName: string): ScriptManifest {
  const r = ScriptManifestSchema.safeParse(parseJson(text, fileName, "bundle manifest"));
  if (!r.success) {
    throw preflightError(
      "bundle",
      `Cannot read bundle manifest "${fileName}": ${formatZodError(r.error)}`,
      "Re-copy the file from the transfer media, or re-run `make prepare-offline`.",
    );
  }
  return r.data;
}

function settingString(v: string | number | boolean): string {
  if (typeof v === "boolean") return v ? "True" : "False";
  return String(v);
}

/**
 * Parses and validates an Admin-UI export's `manifest.json`. Settings are taken from the top
 * level (upper-case keys with scalar values) and from a `settings` object, which wins.
 */
export function parseAdminManifest(text: string, fileName: string): AdminManifest {
  const r = AdminManifestSchema.safeParse(parseJson(text, fileName, "bundle manifest"));
  if (!r.success) {
    throw preflightError(
      "bundle",
      `Cannot read bundle manifest "${fileName}": ${formatZodError(r.error)}`,
      "Re-copy the file from the transfer media, or export the package again from the Admin UI.",
    );
  }
  const raw = r.data as Record<string, unknown>;
  const settings: Record<string, string> = Object.create(null);
  for (const [k, v] of Object.entries(raw)) {
    if (!SETTINGS_KEY_RE.test(k)) continue;
    if (typeof v === "string" || typeof v === "number" || typeof v === "boolean") {
      settings[k] = settingString(v);
    }
  }
  for (const [k, v] of Object.entries(r.data.settings ?? {})) {
    if (!ENV_NAME_RE.test(k)) {
      throw preflightError(
        "bundle",
        `Cannot read bundle manifest "${fileName}": settings key ${
          JSON.stringify(k)
        } is not a variable name`,
        "Re-copy the file from the transfer media, or export the package again from the Admin UI.",
      );
    }
    if (v !== null) settings[k] = settingString(v);
  }
  const cortexVersion = typeof raw.cortex_version === "string"
    ? raw.cortex_version
    : typeof raw.version === "string"
    ? raw.version
    : undefined;
  return { raw, cortexVersion, settings };
}

/** The tag an engine entry carries in `version` (vLLM) or `tag` (llama.cpp). */
function entryTag(entry: ScriptEntry): string | undefined {
  const e = entry as ScriptEngine;
  return e.version ?? e.tag;
}

/**
 * The refs a script manifest entry declares. Engines: `name:version` or `name:tag`.
 * Infrastructure: `name` as is. A name without a tag (and no version/tag) gives `[]`, meaning
 * "resolve from the tar's RepoTags": `nvidia/dcgm-exporter` must NOT become `:latest`.
 */
export function scriptImageRefs(entry: ScriptEntry): string[] {
  const tag = entryTag(entry);
  const name = entry.name.trim();
  if (hasTagOrDigest(name)) return [name];
  if (tag) return [`${name}:${tag}`];
  return [];
}

/** Whether a ref names a tag or digest (`host:5000/repo` has a port, not a tag). */
export function hasTagOrDigest(ref: string): boolean {
  if (ref.includes("@")) return true;
  const slash = ref.lastIndexOf("/");
  return ref.lastIndexOf(":") > slash;
}

/** Whether a manifest purpose marks the image optional: `GPU metrics (optional)`. */
export function isOptional(purpose: string | undefined): boolean {
  return purpose !== undefined && /\(optional\)/i.test(purpose);
}
