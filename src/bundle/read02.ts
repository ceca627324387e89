/**
 * Reads a Cortex 0.2 bundle (bundle.json + images.json + images/ + models/<served>/...) into the
 * shared `Bundle` shape, so verify, load and doctor work on it as on 0.1 packages. Pure: it gets
 * a listing of the folder and the bytes of its small index files (see `readBundle`).
 *
 * Trust (fail closed, cortex-0.2-facts §1): an image tar is covered by images.json's `sha256`
 * and/or checksums.sha256 (both present must agree; a release pin beats both), and images.json's
 * own `sha256` values count only because checksums.sha256 covers images.json and it matched. A
 * model file is covered by checksums.sha256 or a pin: its manifest is covered by nothing, so a
 * file listed only there is "unlisted" (its manifest digest is still checked when it is read).
 * db/cortex.sql is covered by checksums.sha256. bundle.json, the model manifests, versions.env
 * and wheels/ are never covered: they are reported as such and decide nothing that is trusted.
 */
import { join } from "node:path";
import { sha256Hex, shortDigest } from "../hash.ts";
import {
  BUNDLE_JSON,
  CHECKSUMS_FILE,
  DB_DUMP,
  IMAGES_JSON,
  MODEL_FILES_DIR,
  MODEL_MANIFEST,
  MODELS_DIR,
  VERSIONS_ENV,
  WHEELS_DIR,
} from "../layout.ts";
import type {
  Bundle,
  BundleFile,
  BundleImage,
  BundleModelFile,
  BundleProblem,
  ExpectedSource,
  ModelSource,
} from "./types.ts";
import { normalizeBundlePath, parseChecksums } from "./checksums.ts";
import {
  checkModelPath,
  type ImageEntry,
  isScriptBundle,
  type ModelManifest,
  parseBundleJson,
  parseImagesJson,
  parseModelManifest,
} from "./bundle02.ts";
import {
  cortexCritical,
  matchReleaseImage,
  pinOf,
  pinsFor,
  type ReleaseManifest,
  type ReleasePolicies,
  selectPolicy,
} from "./release.ts";

/** What `describeBundle02` needs: the folder's files and the bytes of its small index files. */
export interface Listing02 {
  /** Absolute bundle dir. */
  dir: string;
  /** Relative path (forward slashes) -> size in bytes, for every regular file. */
  files: Map<string, number>;
  /** Relative paths that are symbolic links (to files or folders). */
  symlinks: Set<string>;
  /** Bytes of bundle.json, images.json and every models/<served>/manifest.json present. */
  raw: Map<string, Uint8Array>;
  checksumsText?: string;
}

const RECOPY = "Re-copy the bundle from the transfer media, then run again.";
const TAMPER_HINT = "The bundle changed after Cortex wrote it (or in transit): re-copy it from " +
  "the transfer media, or write it again on the source host.";

const sortByPath = <T extends { path: string }>(a: T, b: T) =>
  a.path < b.path ? -1 : a.path > b.path ? 1 : 0;

/** Whether a given policy argument is a set of policies (vs one policy). */
export function isPolicySet(r: ReleaseManifest | ReleasePolicies): r is ReleasePolicies {
  return Array.isArray((r as ReleasePolicies).lines);
}

/**
 * Builds the Bundle of a 0.2 bundle folder (pure). Throws a preflight error (exit 3) naming the
 * file for a bundle.json of another kind or a malformed bundle.json, images.json or model
 * manifest; integrity findings (images.json vs checksums, digests that disagree, unsafe model
 * paths, symlinks) are returned in `problems` so that `verify` can report them all.
 */
export function describeBundle02(
  listing: Listing02,
  release: ReleaseManifest | ReleasePolicies,
): Bundle {
  const { dir, files } = listing;
  const bundleJson = parseBundleJson(listing.raw.get(BUNDLE_JSON)!, join(dir, BUNDLE_JSON));
  const format = isScriptBundle(bundleJson, files.keys()) ? "bundle-script" : "bundle-admin-ui";
  const rawVersion = bundleJson.cortex_version ?? undefined;
  let policy: ReleaseManifest;
  let pins: Record<string, string>;
  const warnings: string[] = [];
  let line: string | undefined;
  let version: string | undefined;
  if (isPolicySet(release)) {
    const choice = selectPolicy(release, {
      version: rawVersion,
      layoutLine: "0.2",
      source: BUNDLE_JSON,
    });
    policy = choice.policy;
    pins = pinsFor(release, policy);
    line = choice.line;
    version = choice.version;
    warnings.push(...choice.warnings);
  } else {
    policy = release;
    pins = release.pins;
    line = "0.2";
  }
  const checksums = listing.checksumsText === undefined
    ? new Map<string, string>()
    : parseChecksums(listing.checksumsText, join(dir, CHECKSUMS_FILE));

  const problems: BundleProblem[] = [];
  const missing = new Set<string>();
  const uncovered = new Set<string>([BUNDLE_JSON]);
  const byPath = new Map<string, BundleFile>();
  const expectedOf = (path: string): BundleFile["expected"] => {
    const pin = pinOf(pins, path);
    if (pin) return { sha256: pin, source: "pin" };
    const sum = checksums.get(path);
    return sum ? { sha256: sum, source: "checksums" } : undefined;
  };
  const addFile = (
    path: string,
    kind: BundleFile["kind"],
    extra: { expected?: BundleFile["expected"]; manifestSha256?: string } = {},
  ): BundleFile => {
    const prev = byPath.get(path);
    if (prev) return prev;
    const size = files.get(path);
    const expected = "expected" in extra ? extra.expected : expectedOf(path);
    const f: BundleFile = {
      path,
      abs: join(dir, path),
      ...(size !== undefined ? { size } : {}),
      kind,
      ...(expected ? { expected } : {}),
      ...(extra.manifestSha256 ? { manifestSha256: extra.manifestSha256 } : {}),
    };
    byPath.set(path, f);
    if (size === undefined) missing.add(path);
    return f;
  };

  // images.json: trusted only when checksums.sha256 covers it and it matched.
  const imagesRaw = listing.raw.get(IMAGES_JSON);
  let imagesTrusted = false;
  let imagesSelfMismatch = false;
  let entries: ImageEntry[] = [];
  if (imagesRaw === undefined) {
    if (expectedOf(IMAGES_JSON)) addFile(IMAGES_JSON, "manifest"); // a listed file, missing
    problems.push({
      path: IMAGES_JSON,
      scope: "images",
      verdict: "missing",
      message: `Cannot read the bundle's images: "${IMAGES_JSON}" is missing`,
      hint: RECOPY,
    });
  } else {
    const actual = sha256Hex(imagesRaw);
    const listed = expectedOf(IMAGES_JSON);
    addFile(IMAGES_JSON, "manifest");
    if (!listed) {
      uncovered.add(IMAGES_JSON);
      warnings.push(
        `"${IMAGES_JSON}" is not covered by ${CHECKSUMS_FILE}: its sha256 values are not used; ` +
          `each image tar needs a line in ${CHECKSUMS_FILE}`,
      );
    } else if (listed.sha256 !== actual) {
      imagesSelfMismatch = true;
      problems.push({
        path: IMAGES_JSON,
        scope: "images",
        verdict: "mismatch",
        message: `Cannot trust "${IMAGES_JSON}": sha256 is ${shortDigest(actual)}, ${
          listed.source === "pin" ? "the release pins list" : `${CHECKSUMS_FILE} lists`
        } ${shortDigest(listed.sha256)}`,
        hint: TAMPER_HINT,
      });
    } else {
      imagesTrusted = true;
    }
    try {
      entries = parseImagesJson(imagesRaw, join(dir, IMAGES_JSON));
    } catch (e) {
      // A damaged images.json is reported as such (exit 4), not as a malformed one (exit 3).
      if (!imagesSelfMismatch) throw e;
    }
  }

  // Images, in images.json order; a file listed twice gets every ref.
  const images: BundleImage[] = [];
  const imageByFile = new Map<string, BundleImage>();
  for (const entry of entries) {
    const norm = normalizeBundlePath(entry.file);
    const file = "path" in norm ? norm.path : entry.file;
    const prev = imageByFile.get(file);
    if (prev) {
      if (!prev.declaredRefs.includes(entry.ref)) prev.declaredRefs.push(entry.ref);
      continue;
    }
    const rel = matchReleaseImage(policy, entry.ref);
    const role = entry.role ?? undefined;
    const critical = rel
      ? rel.critical
      : (role !== undefined && policy.roles[role] === true) || cortexCritical(entry.ref);
    const img: BundleImage = {
      file,
      declaredRefs: [entry.ref],
      critical,
      ...(rel ? { role: rel.role } : {}),
      ...(role ? { bundleRole: role } : {}),
      // The ID (skip without opening the tar) and the retag to `ref` act on the engine: only an
      // images.json that checksums.sha256 covers may decide them; otherwise the tar's own index
      // does, as for 0.1 packages.
      ...(entry.id && imagesTrusted ? { imageId: entry.id } : {}),
      ...(imagesTrusted ? { tagDeclared: true } : {}),
    };
    imageByFile.set(file, img);
    images.push(img);

    const pin = pinOf(pins, file);
    const sumC = checksums.get(file);
    const sumJ = entry.sha256 ?? undefined;
    let expected: BundleFile["expected"];
    if (pin) {
      expected = { sha256: pin, source: "pin" };
      if (sumJ && sumC && sumJ !== sumC) {
        warnings.push(
          `"${file}": ${IMAGES_JSON} lists sha256 ${shortDigest(sumJ)}, ${CHECKSUMS_FILE} ` +
            `lists ${shortDigest(sumC)}; the release pin decides`,
        );
      }
    } else if (sumJ && sumC && sumJ !== sumC && !imagesSelfMismatch) {
      problems.push({
        path: file,
        scope: "images",
        verdict: "conflict",
        message: `Cannot trust "${file}": ${IMAGES_JSON} lists sha256 ${
          shortDigest(sumJ)
        }, ${CHECKSUMS_FILE} lists ${shortDigest(sumC)}`,
        hint: TAMPER_HINT,
      });
      expected = { sha256: sumC, source: "checksums" };
    } else if (sumC) {
      expected = { sha256: sumC, source: "checksums" };
    } else if (sumJ && imagesTrusted) {
      expected = { sha256: sumJ, source: "images.json" as ExpectedSource };
    }
    addFile(file, "image", { expected });
  }

  // Tars in images/ that images.json does not list are never loaded.
  const strayTars: string[] = [];
  for (const p of [...files.keys()].sort()) {
    if (!/^images\/[^/]+\.(tar|tar\.gz|tgz)$/.test(p) || imageByFile.has(p)) continue;
    const f = addFile(p, "other");
    if (f.expected) {
      warnings.push(`"${p}" is not listed in ${IMAGES_JSON}: it is not loaded`);
    } else {
      strayTars.push(p);
    }
  }

  // Models: models/<served>/manifest.json + files/.
  const models: ModelSource[] = [];
  const served = new Set<string>();
  for (const p of [...files.keys(), ...listing.symlinks]) {
    const parts = p.split("/");
    if (parts[0] === MODELS_DIR && parts.length >= 3) served.add(parts[1]);
  }
  for (const name of [...served].sort()) {
    const m = describeModel(listing, name, {
      expectedOf,
      addFile,
      problems,
      warnings,
      uncovered,
    });
    if (m) models.push(m);
  }

  // db/cortex.sql, wheels/, versions.env and anything else checksums.sha256 lists.
  if (files.has(DB_DUMP) || checksums.has(DB_DUMP)) addFile(DB_DUMP, "db");
  const wheels = [...files.keys()].filter((p) => p.startsWith(`${WHEELS_DIR}/`)).sort();
  if (wheels.some((p) => !expectedOf(p))) uncovered.add(`${WHEELS_DIR}/`);
  if (files.has(VERSIONS_ENV) && !expectedOf(VERSIONS_ENV)) uncovered.add(VERSIONS_ENV);
  for (const p of checksums.keys()) {
    if (byPath.has(p)) continue;
    addFile(p, p.startsWith(`${MODELS_DIR}/`) ? "model" : p === DB_DUMP ? "db" : "other");
  }
  for (const p of Object.keys(pins)) if (files.has(p)) addFile(p, "other");

  const bundleFiles = [...byPath.values()].sort(sortByPath);
  const unlisted = [
    ...bundleFiles
      .filter((f) =>
        f.size !== undefined && !f.expected &&
        (f.kind === "image" || f.kind === "model" || f.kind === "db")
      )
      .map((f) => f.path),
    ...strayTars,
  ].sort();

  return {
    dir,
    format,
    ...(version ?? rawVersion ? { cortexVersion: (version ?? rawVersion)! } : {}),
    files: bundleFiles,
    images,
    models,
    hasChecksums: listing.checksumsText !== undefined,
    unlisted,
    missing: [...missing].sort(),
    warnings,
    ...(line ? { line } : {}),
    problems: problems.sort(sortByPath),
    uncovered: [...uncovered].sort(),
    ...(wheels.length > 0 ? { wheels } : {}),
    // The Admin UI's pg_dump, restored on a fresh install (steps/restore_db.ts).
    ...(bundleJson.contents?.db_dump === true && files.has(DB_DUMP) ? { dbDump: DB_DUMP } : {}),
  };
}

interface ModelCtx {
  expectedOf: (path: string) => BundleFile["expected"];
  addFile: (
    path: string,
    kind: BundleFile["kind"],
    extra?: { expected?: BundleFile["expected"]; manifestSha256?: string },
  ) => BundleFile;
  problems: BundleProblem[];
  warnings: string[];
  uncovered: Set<string>;
}

/**
 * One model folder `models/<name>/`: its manifest's files (paths checked), the files present in
 * `files/`, their coverage. Returns undefined when the model is refused (unsafe path, symlink):
 * the reason is in `problems`.
 */
function describeModel(
  listing: Listing02,
  name: string,
  c: ModelCtx,
): Extract<ModelSource, { kind: "bundle-model" }> | undefined {
  const base = `${MODELS_DIR}/${name}`;
  const manifestPath = `${base}/${MODEL_MANIFEST}`;
  const filesPrefix = `${base}/${MODEL_FILES_DIR}/`;
  const refuse = (path: string, verdict: BundleProblem["verdict"], why: string) => {
    c.problems.push({
      path,
      scope: "models",
      verdict,
      message: `Cannot seed model "${name}": ${why}`,
      hint: "The model is refused as a whole. Write the bundle again on the source host " +
        "(Transfer → Export), with plain files and relative paths.",
    });
    return undefined;
  };

  const links = [...listing.symlinks].filter((p) => p === base || p.startsWith(`${base}/`));
  if (links.length > 0) {
    return refuse(links.sort()[0], "unsafe", `"${links.sort()[0]}" is a symbolic link`);
  }

  let manifest: ModelManifest | undefined;
  const raw = listing.raw.get(manifestPath);
  if (raw !== undefined) {
    manifest = parseModelManifest(raw, join(listing.dir, manifestPath));
    if (!c.expectedOf(manifestPath)) c.uncovered.add(manifestPath);
    else c.addFile(manifestPath, "manifest");
    if (manifest.served_model_name !== name) {
      c.warnings.push(
        `"${manifestPath}" names the model "${manifest.served_model_name}"; its folder is "${name}"`,
      );
    }
  } else {
    c.warnings.push(
      `Model "${name}" has no ${MODEL_MANIFEST}: its files are placed as they lie in ${filesPrefix}`,
    );
  }

  const onDisk = [...listing.files.keys()].filter((p) => p.startsWith(filesPrefix)).sort();
  const out: BundleModelFile[] = [];
  const seen = new Set<string>();
  for (const f of manifest?.files ?? []) {
    const chk = checkModelPath(f.path);
    if ("error" in chk) {
      return refuse(manifestPath, "unsafe", `${MODEL_MANIFEST} lists an unsafe ${chk.error}`);
    }
    if (seen.has(chk.path)) continue;
    seen.add(chk.path);
    const src = filesPrefix + chk.path;
    const manifestSha256 = f.sha256 ?? undefined;
    const listed = c.expectedOf(src);
    if (
      listed?.source === "checksums" && manifestSha256 && manifestSha256 !== listed.sha256
    ) {
      c.problems.push({
        path: src,
        scope: "models",
        verdict: "conflict",
        message: `Cannot trust "${src}": ${manifestPath} lists sha256 ${
          shortDigest(manifestSha256)
        }, ${CHECKSUMS_FILE} lists ${shortDigest(listed.sha256)}`,
        hint: TAMPER_HINT,
      });
    }
    c.addFile(src, "model", { expected: listed, ...(manifestSha256 ? { manifestSha256 } : {}) });
    out.push({
      path: chk.path,
      src,
      bytes: f.bytes,
      ...(manifestSha256 ? { manifestSha256 } : {}),
    });
  }
  for (const src of onDisk) {
    const rel = src.slice(filesPrefix.length);
    if (seen.has(rel)) continue;
    const chk = checkModelPath(rel);
    if ("error" in chk) return refuse(src, "unsafe", `its files/ hold an unsafe ${chk.error}`);
    seen.add(rel);
    const f = c.addFile(src, "model");
    if (manifest) {
      c.warnings.push(
        `"${src}" is not listed in "${manifestPath}"${
          f.expected ? "" : ` or ${CHECKSUMS_FILE}`
        }; it is placed with the model`,
      );
    }
    out.push({ path: rel, src, bytes: listing.files.get(src) ?? 0 });
  }
  // Placed at <models dir>/<path>: the top folders (or files) the model creates there.
  const targets = [...new Set(out.map((f) => f.path.split("/")[0]))].sort();
  const local = manifest?.local_path ? checkModelPath(manifest.local_path) : undefined;
  if (local && "path" in local) {
    const top = local.path.split("/")[0];
    if (targets.some((t) => t !== top)) {
      c.warnings.push(
        `Model "${name}": some paths in "${manifestPath}" are not under its local_path "${local.path}"`,
      );
    }
  }
  return {
    kind: "bundle-model",
    name,
    path: base,
    manifest: manifestPath,
    targets,
    files: out.sort(sortByPath),
    ...(manifest?.engine_type ? { engineType: manifest.engine_type } : {}),
    ...(manifest?.engine_image ? { engineImage: manifest.engine_image } : {}),
  };
}
