/**
 * Reads a bundle folder without reading its data: detects the format (script package, Admin-UI
 * export, plain folder of tars), lists files with sizes, attaches the digest each file must have
 * (a release pin beats checksums.sha256), and works out the images, model sources, what is
 * unlisted and what is missing. The pure part (`describeBundle`) takes a file listing and the
 * manifest/checksums texts; `readBundle` does the I/O around it.
 */
import { createHash } from "node:crypto";
import { join, resolve } from "node:path";
import { preflightError } from "../errors.ts";
import {
  ADMIN_IMAGES_DIR,
  BUNDLE_JSON,
  BUNDLE_MANIFEST,
  CHECKSUMS_FILE,
  DB_DUMP,
  HF_CACHE_ARCHIVE,
  IMAGES_JSON,
  MODEL_FILES_ARCHIVE_RE,
  MODEL_MANIFEST,
  MODELS_ARCHIVE,
  MODELS_DIR,
  STATUS_FILE,
} from "../layout.ts";
import type { Bundle, BundleFile, BundleFormat, BundleImage, ModelSource } from "./types.ts";
import {
  cortexCritical,
  matchReleaseImage,
  normalizeRef,
  pinOf,
  pinsFor,
  policyForLine,
  type ReleaseManifest,
  type ReleasePolicies,
} from "./release.ts";
import { describeBundle02, isPolicySet } from "./read02.ts";
import { normalizeBundlePath, parseChecksums } from "./checksums.ts";
import {
  hasAdminSettings,
  isOptional,
  isScriptManifestShape,
  parseAdminManifest,
  parseScriptManifest,
  scriptImageRefs,
} from "./manifests.ts";

/** The largest manifest.json / checksums.sha256 read into memory. */
const MAX_TEXT_FILE = 16 * 1024 * 1024;
const IMAGE_TAR_RE = /\.(tar|tar\.gz|tgz)$/;
const BUNDLE_HINT = "Point --bundle at a Cortex bundle (cortex-offline-bundle/ or an Admin-UI " +
  "cortex-bundle-* folder; 0.1: cortex-offline-images/ or a migration export), or a folder of " +
  "`docker save` tars with a checksums.sha256.";

/** What `describeBundle` needs: the folder's files and the texts of its two index files. */
export interface BundleListing {
  /** Absolute bundle dir. */
  dir: string;
  /** Relative path (forward slashes) -> size in bytes, for every regular file in the bundle. */
  files: Map<string, number>;
  manifestText?: string;
  checksumsText?: string;
  /** Relative paths that are symbolic links (0.2 models refuse them). */
  symlinks?: Set<string>;
  /** 0.2: bytes of bundle.json, images.json and each models/<served>/manifest.json. */
  raw?: Map<string, Uint8Array>;
}

/** How a format is named to people: "Cortex 0.2 bundle (script)", ... */
export function formatName(f: BundleFormat): string {
  switch (f) {
    case "bundle-script":
      return "Cortex 0.2 bundle (script)";
    case "bundle-admin-ui":
      return "Cortex 0.2 bundle (Admin UI)";
    case "script":
      return "Cortex script package";
    case "admin-ui":
      return "Cortex Admin-UI migration package";
    default:
      return "folder of docker save tars";
  }
}

/**
 * Detects the bundle format from the parsed manifest.json (undefined when absent) and the
 * relative paths present. Returns undefined when nothing in the folder looks like a bundle.
 */
export function detectFormat(
  manifest: unknown,
  paths: Iterable<string>,
): BundleFormat | undefined {
  const list = [...paths];
  const topTars = list.some((p) => !p.includes("/") && IMAGE_TAR_RE.test(p));
  const adminTars = list.some((p) => isAdminImagePath(p));
  if (manifest !== undefined) {
    if (isScriptManifestShape(manifest)) return "script";
    if (hasAdminSettings(manifest) || adminTars || list.includes(STATUS_FILE)) return "admin-ui";
    return undefined;
  }
  if (topTars) return "folder";
  if (adminTars) return "admin-ui";
  return undefined;
}

function isAdminImagePath(p: string): boolean {
  const parts = p.split("/");
  return parts.length === 2 && parts[0] === ADMIN_IMAGES_DIR && IMAGE_TAR_RE.test(parts[1]);
}

/** The Admin-UI file name for a ref: `/` -> `_`, `:` -> `__` (vllm_vllm-openai__latest.tar). */
export function adminImageFileName(ref: string): string {
  return `${ref.replaceAll(":", "__").replaceAll("/", "_")}.tar`;
}

/** Best guess at the ref an Admin-UI file name encodes (ambiguous when repos contain `_`). */
export function guessRefFromAdminFile(file: string): string {
  const stem = file.split("/").pop()!.replace(IMAGE_TAR_RE, "");
  return stem.replaceAll("__", ":").replaceAll("_", "/");
}

function classify(path: string, images: Set<string>): BundleFile["kind"] {
  if (images.has(path)) return "image";
  const top = !path.includes("/");
  if (path === BUNDLE_MANIFEST || (path.startsWith("manifests/") && path.endsWith(".json"))) {
    return "manifest";
  }
  if (path.startsWith("db/")) return "db";
  if (
    top &&
    (path === MODELS_ARCHIVE || path === HF_CACHE_ARCHIVE || MODEL_FILES_ARCHIVE_RE.test(path))
  ) {
    return "archive";
  }
  if (path.startsWith(`${MODELS_DIR}/`)) return "model";
  return "other";
}

function parseJsonLoose(text: string, fileName: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw preflightError(
      "bundle",
      `Cannot read bundle manifest "${fileName}": not valid JSON: ${(e as Error).message}`,
      "Re-copy the file from the transfer media.",
    );
  }
}

/**
 * The pure core of `readBundle`: from a listing of the bundle folder and the texts of its
 * manifest.json and checksums.sha256 (0.2: the bytes of bundle.json, images.json and the model
 * manifests), builds the Bundle. `release` is one policy, or the set of policies per release
 * line (the 0.2 bundle picks its line from bundle.json; 0.1 packages take the 0.1 line). Throws
 * preflight errors for unrecognisable folders and malformed manifests or checksums.
 */
export function describeBundle(
  listing: BundleListing,
  policies: ReleaseManifest | ReleasePolicies,
): Bundle {
  const { dir, files } = listing;
  if (files.has(BUNDLE_JSON)) {
    return describeBundle02({
      dir,
      files,
      symlinks: listing.symlinks ?? new Set(),
      raw: listing.raw ?? new Map(),
      ...(listing.checksumsText !== undefined ? { checksumsText: listing.checksumsText } : {}),
    }, policies);
  }
  let release: ReleaseManifest;
  if (isPolicySet(policies)) {
    const p = policyForLine(policies, "0.1") ?? policies.lines[0];
    release = { ...p, pins: pinsFor(policies, p) };
  } else {
    release = policies;
  }
  const manifestName = join(dir, BUNDLE_MANIFEST);
  const manifestJson = listing.manifestText === undefined
    ? undefined
    : parseJsonLoose(listing.manifestText, manifestName);
  const format = detectFormat(manifestJson, files.keys());
  if (!format) {
    const why = manifestJson !== undefined
      ? `"${BUNDLE_MANIFEST}" is neither a \`make prepare-offline\` manifest (no "images") ` +
        "nor an Admin-UI export manifest (no settings)"
      : "no manifest.json and no image tars (*.tar, *.tar.gz, *.tgz)";
    throw preflightError("bundle", `Cannot read bundle "${dir}": ${why}`, BUNDLE_HINT);
  }
  const checksums = listing.checksumsText === undefined
    ? new Map<string, string>()
    : parseChecksums(listing.checksumsText, join(dir, CHECKSUMS_FILE));

  const warnings: string[] = [];
  const missing = new Set<string>();
  const images: BundleImage[] = [];
  let cortexVersion: string | undefined;
  let settings: Record<string, string> | undefined;
  const optionalAbsent = new Set<string>();

  const releaseFields = (ref: string) => {
    const rel = matchReleaseImage(release, ref);
    return rel ? { role: rel.role, critical: rel.critical } : undefined;
  };

  if (format === "script") {
    const m = parseScriptManifest(listing.manifestText!, manifestName);
    cortexVersion = m.cortex_version;
    const byFile = new Map<string, BundleImage>();
    const entries = [...m.images.engines, ...m.images.infrastructure];
    for (const entry of entries) {
      const norm = normalizeBundlePath(entry.file);
      const file = "path" in norm ? norm.path : entry.file; // the schema refused escapes
      const refs = scriptImageRefs(entry);
      const matchRef = refs[0] ?? entry.name;
      const optional = isOptional(entry.purpose);
      if (!files.has(file)) {
        if (optional) {
          optionalAbsent.add(file);
          warnings.push(
            `Optional image "${entry.name}" ("${file}") is listed in ${BUNDLE_MANIFEST} but ` +
              "not in the bundle; it will be skipped",
          );
        } else {
          missing.add(file);
        }
        continue;
      }
      const prev = byFile.get(file);
      if (prev) {
        for (const r of refs) if (!prev.declaredRefs.includes(r)) prev.declaredRefs.push(r);
        continue;
      }
      const rel = releaseFields(matchRef);
      const img: BundleImage = {
        file,
        declaredRefs: refs,
        critical: rel ? rel.critical : !optional && cortexCritical(matchRef),
        ...(entry.purpose !== undefined ? { purpose: entry.purpose } : {}),
        ...(rel ? { role: rel.role } : {}),
      };
      byFile.set(file, img);
      images.push(img);
    }
    const extras = [...files.keys()]
      .filter((p) => !p.includes("/") && p.endsWith(".tar") && !byFile.has(p))
      .sort();
    for (const file of extras) {
      warnings.push(
        `Image tar "${file}" is not listed in ${BUNDLE_MANIFEST}; its refs come from the tar`,
      );
      images.push({ file, declaredRefs: [], critical: cortexCritical(file) });
    }
  } else if (format === "admin-ui") {
    if (manifestJson !== undefined && hasAdminSettings(manifestJson)) {
      const m = parseAdminManifest(listing.manifestText!, manifestName);
      cortexVersion = m.cortexVersion;
      settings = m.settings;
    } else {
      settings = {};
      warnings.push(
        manifestJson === undefined
          ? `No ${BUNDLE_MANIFEST} in the Admin-UI export: no settings will be imported`
          : `${BUNDLE_MANIFEST} carries no settings (VLLM_IMAGE, ...): none will be imported`,
      );
    }
    const imageRefs = Object.entries(settings)
      .filter(([k]) => /_IMAGE$/.test(k))
      .map(([, v]) => v);
    for (const file of [...files.keys()].filter(isAdminImagePath).sort()) {
      const base = file.slice(ADMIN_IMAGES_DIR.length + 1);
      const declaredRefs = imageRefs.filter((r) =>
        adminImageFileName(r) === base || adminImageFileName(normalizeRef(r)) === base
      );
      const guess = declaredRefs[0] ?? guessRefFromAdminFile(file);
      const rel = releaseFields(guess);
      images.push({
        file,
        declaredRefs,
        critical: rel ? rel.critical : cortexCritical(guess),
        ...(rel ? { role: rel.role } : {}),
      });
    }
  } else {
    for (
      const file of [...files.keys()].filter((p) => !p.includes("/") && IMAGE_TAR_RE.test(p)).sort()
    ) {
      images.push({ file, declaredRefs: [], critical: cortexCritical(file) });
    }
  }

  // Files: everything listed, pinned or worth verifying (images, archives, models, db).
  const imageSet = new Set(images.map((i) => i.file));
  for (const p of missing) imageSet.add(p);
  const paths = new Set<string>();
  for (const p of checksums.keys()) if (!optionalAbsent.has(p)) paths.add(p);
  for (const p of missing) paths.add(p);
  for (const p of files.keys()) {
    if (pinOf(release.pins, p) !== undefined) paths.add(p);
    const k = classify(p, imageSet);
    if (k === "image" || k === "archive" || k === "model" || k === "db") paths.add(p);
  }
  const bundleFiles: BundleFile[] = [...paths].sort().map((path) => {
    const pin = pinOf(release.pins, path);
    const sum = checksums.get(path);
    const size = files.get(path);
    return {
      path,
      abs: join(dir, path),
      ...(size !== undefined ? { size } : {}),
      kind: classify(path, imageSet),
      ...(pin
        ? { expected: { sha256: pin, source: "pin" as const } }
        : sum
        ? { expected: { sha256: sum, source: "checksums" as const } }
        : {}),
    };
  });
  for (const f of bundleFiles) if (f.size === undefined) missing.add(f.path);

  const unlisted = bundleFiles
    .filter((f) =>
      f.size !== undefined && !f.expected &&
      (f.kind === "image" || f.kind === "archive" || f.kind === "model")
    )
    .map((f) => f.path);

  return {
    dir,
    format,
    ...(cortexVersion !== undefined ? { cortexVersion } : {}),
    files: bundleFiles,
    images,
    models: modelSources(files.keys()),
    ...(settings !== undefined ? { settings } : {}),
    hasChecksums: listing.checksumsText !== undefined,
    unlisted,
    missing: [...missing].sort(),
    warnings,
    line: "0.1",
    // The Admin UI's pg_dump, restored on a fresh install (steps/restore_db.ts).
    ...(format === "admin-ui" && files.has(DB_DUMP) ? { dbDump: DB_DUMP } : {}),
  };
}

/** Model sources: `models/<name>/` folders and the Admin-UI archives, sorted. */
export function modelSources(paths: Iterable<string>): ModelSource[] {
  const folders = new Set<string>();
  const out: ModelSource[] = [];
  for (const p of paths) {
    const parts = p.split("/");
    if (parts.length >= 3 && parts[0] === MODELS_DIR) folders.add(parts[1]);
    if (parts.length !== 1) continue;
    if (p === MODELS_ARCHIVE) out.push({ kind: "models-archive", path: p });
    else if (p === HF_CACHE_ARCHIVE) out.push({ kind: "hf-cache-archive", path: p });
    else {
      const m = MODEL_FILES_ARCHIVE_RE.exec(p);
      if (m) out.push({ kind: "model-archive", id: m[1], path: p });
    }
  }
  for (const name of folders) {
    out.push({ kind: "folder", name, path: `${MODELS_DIR}/${name}` });
  }
  return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/**
 * Lists every regular file under `dir` (following file symlinks, not dir symlinks), and every
 * symlink's path into `symlinks`.
 */
async function listFiles(
  dir: string,
  symlinks: Set<string> = new Set(),
): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  const walk = async (rel: string) => {
    const abs = rel ? join(dir, rel) : dir;
    for await (const e of Deno.readDir(abs)) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isSymlink) symlinks.add(r);
      if (e.isDirectory) {
        await walk(r);
      } else if (e.isFile || e.isSymlink) {
        try {
          const st = await Deno.stat(join(dir, r));
          if (st.isFile) out.set(r, st.size);
        } catch {
          // A dangling symlink is not a bundle file.
        }
      }
    }
  };
  await walk("");
  return out;
}

/** `models/<served>/manifest.json` of a 0.2 bundle. */
function isModelManifest(p: string): boolean {
  const parts = p.split("/");
  return parts.length === 3 && parts[0] === MODELS_DIR && parts[2] === MODEL_MANIFEST;
}

async function readSmallBytes(path: string, size: number): Promise<Uint8Array> {
  if (size > MAX_TEXT_FILE) {
    throw preflightError(
      "bundle",
      `Cannot read "${path}": it is ${size} bytes, more than an index file can be`,
      "Re-copy the file from the transfer media.",
    );
  }
  try {
    return await Deno.readFile(path);
  } catch (e) {
    throw preflightError("bundle", `Cannot read "${path}": ${(e as Error).message}`);
  }
}

async function readSmallText(path: string, size: number): Promise<string> {
  if (size > MAX_TEXT_FILE) {
    throw preflightError(
      "bundle",
      `Cannot read "${path}": it is ${size} bytes, more than a manifest can be`,
      "Re-copy the file from the transfer media.",
    );
  }
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    throw preflightError("bundle", `Cannot read "${path}": ${(e as Error).message}`);
  }
}

async function checkDir(dir: string): Promise<void> {
  let st: Deno.FileInfo;
  try {
    st = await Deno.stat(dir);
  } catch (e) {
    const why = e instanceof Deno.errors.NotFound ? "no such folder" : (e as Error).message;
    throw preflightError(
      "bundle",
      `Cannot read bundle "${dir}": ${why}`,
      "Check the path given with --bundle (default: ./cortex-offline-images).",
    );
  }
  if (!st.isDirectory) {
    throw preflightError(
      "bundle",
      `Cannot read bundle "${dir}": not a folder`,
      "Pass the folder that holds the tars and checksums.sha256, not a file in it.",
    );
  }
}

/**
 * Reads a bundle folder: detects its format, lists its files with sizes (stat only, no data
 * read), attaches expected digests (a pin from `release.pins` beats checksums.sha256), and
 * works out images, model sources, settings, unlisted and missing files. A missing or
 * unrecognisable folder, or a malformed manifest or checksums file, is a preflight error.
 */
export async function readBundle(
  dir: string,
  release: ReleaseManifest | ReleasePolicies,
): Promise<Bundle> {
  const abs = resolve(dir);
  await checkDir(abs);
  let files: Map<string, number>;
  const symlinks = new Set<string>();
  try {
    files = await listFiles(abs, symlinks);
  } catch (e) {
    throw preflightError("bundle", `Cannot list bundle "${abs}": ${(e as Error).message}`);
  }
  // An index file that is a folder, a device or a dangling link is not "absent".
  for (const name of [CHECKSUMS_FILE, BUNDLE_MANIFEST, BUNDLE_JSON, IMAGES_JSON]) {
    if (files.has(name)) continue;
    const st = await Deno.lstat(join(abs, name)).catch(() => undefined);
    if (st) {
      throw preflightError(
        "bundle",
        `Cannot read "${name}" of bundle "${abs}": it is ${
          st.isDirectory
            ? "a directory"
            : st.isSymlink
            ? "a link to no regular file"
            : "not a regular file"
        }`,
        "Re-copy the bundle from the transfer media.",
      );
    }
  }
  const manifestSize = files.get(BUNDLE_MANIFEST);
  const checksumsSize = files.get(CHECKSUMS_FILE);
  // 0.2: the small index files are read as bytes (images.json is hashed as it lies on disk).
  const raw = new Map<string, Uint8Array>();
  if (files.has(BUNDLE_JSON)) {
    const wanted = [BUNDLE_JSON, IMAGES_JSON, ...[...files.keys()].filter(isModelManifest)];
    for (const p of wanted) {
      const size = files.get(p);
      if (size !== undefined) raw.set(p, await readSmallBytes(join(abs, p), size));
    }
  }
  return describeBundle(
    {
      dir: abs,
      files,
      symlinks,
      raw,
      ...(manifestSize !== undefined
        ? { manifestText: await readSmallText(join(abs, BUNDLE_MANIFEST), manifestSize) }
        : {}),
      ...(checksumsSize !== undefined
        ? { checksumsText: await readSmallText(join(abs, CHECKSUMS_FILE), checksumsSize) }
        : {}),
    },
    release,
  );
}

/**
 * The bundle's identity: `sha256:<hex>` over the bytes of its manifest.json (0.1) or
 * bundle.json (0.2), if any, followed by its checksums.sha256 (if any; in 0.2 it covers
 * images.json). Two bundles with the same index files hold the same release. (A bundle with
 * none gets the digest of no bytes.)
 */
export async function bundleDigest(dir: string): Promise<string> {
  const h = createHash("sha256");
  for (const name of [BUNDLE_MANIFEST, BUNDLE_JSON, CHECKSUMS_FILE]) {
    try {
      h.update(await Deno.readFile(join(dir, name)));
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) {
        throw preflightError("bundle", `Cannot read "${join(dir, name)}": ${(e as Error).message}`);
      }
    }
  }
  return `sha256:${h.digest("hex")}`;
}
