/**
 * Planning the models step (reads only): lists the bundle's model folders and archives, compares
 * each folder with what is installed, and sums the bytes to write per filesystem for the disk
 * preflight. `seedModels` (copy.ts) does the writes. The pure completeness check lives here.
 */
import type { ModelSource } from "../../bundle/types.ts";
import { ExitCode, InstallError } from "../../errors.ts";
import { joinRel, parentOf } from "../safepath.ts";
import {
  contentEntries,
  diffListing,
  join,
  listTree,
  lstatOrNull,
  type TreeEntry,
} from "./tree.ts";

/** One file of a bundle model folder. */
export interface PlannedFile {
  /** Path inside the model folder, with forward slashes. */
  rel: string;
  /** Absolute source path. */
  src: string;
  size: number;
  /** Lower-case hex SHA-256 from the bundle's checksums, when listed. */
  expected?: string;
  /**
   * Cortex 0.2: the SHA-256 its model manifest lists. The manifest is covered by no checksum, so
   * this never makes a file trusted; the copy is still checked against it.
   */
  manifestSha256?: string;
}

/**
 * What will happen to one source: `copy` (target absent), `compare` (target present with the
 * same files and sizes: hashed at seed time, then skipped or a conflict), `unchanged` (target
 * present with the same files, each known to hold the bundle's digest and not modified since it
 * was hashed, per `PlanOptions.knownDigest`: skipped without reading), `conflict` (target
 * differs already by its file list or sizes), `incomplete` (the source lacks split parts; not
 * copied), `extract` (an archive: its entries are only known while it is read).
 */
export type PlanAction =
  | "copy"
  | "compare"
  | "unchanged"
  | "conflict"
  | "incomplete"
  | "extract";

export interface ModelPlanItem {
  source: ModelSource;
  /** The model folder name (folder sources) or the archive's file name. */
  name: string;
  /** The model folder, or the extraction root (models dir, HF cache dir) for archives. */
  target: string;
  /** Absolute path of the source folder or archive. */
  sourcePath: string;
  action: PlanAction;
  /** Files of a folder source (empty for archives). */
  files: PlannedFile[];
  /** Bytes to read for this item (archives: the compressed size). */
  bytes: number;
  /** Bytes this item may write on its target filesystem (archives: an estimate). */
  writeBytes: number;
  /** True when `writeBytes` is an estimate (archives are not listed at plan time). */
  estimated: boolean;
  /** Expected SHA-256 of an archive as a whole, when the bundle lists it. */
  expected?: string;
  /** Why a conflict or incomplete verdict was given at plan time. */
  reason?: string;
  warnings: string[];
}

/** Bytes to be written on one filesystem (for the disk preflight). */
export interface FilesystemUse {
  /** The first existing folder on that filesystem (e.g. the models dir or an ancestor). */
  path: string;
  dev: number;
  bytes: number;
  estimated: boolean;
}

export interface ModelPlan {
  modelsDir: string;
  hfCacheDir: string;
  items: ModelPlanItem[];
  /** Progress work in bytes (reads + hashes). */
  bytes: number;
  filesystems: FilesystemUse[];
  /** Whether planModels already added `bytes` to a progress total. */
  progressAdded: boolean;
}

export interface PlanOptions {
  modelsDir: string;
  hfCacheDir: string;
  bundleDir: string;
  /** Expected digests by path relative to the bundle dir ("models/tiny/config.json"). */
  expected: Map<string, string>;
  /** When given, the plan's bytes are added to this progress total now. */
  progress?: { addTotal(bytes: number): void };
  /**
   * The SHA-256 an installed file had when it was last hashed, when its stat shows that it has
   * not changed since (the install passes the state journal's `verifiedSha256`, fed by
   * `SeedOptions.onVerified`); undefined when unknown or changed. With it, an installed folder
   * whose every file is known to hold the bundle's digest is planned `unchanged` and never read.
   */
  knownDigest?: (path: string, stat: Deno.FileInfo) => string | undefined;
}

// ---------------------------------------------------------------------------------------------
// Pure checks

const SPLIT_RE = /^(.*)-(\d{5})-of-(\d{5})\.(gguf|safetensors)$/;
const TOKENIZER_FILES = ["tokenizer.json", "tokenizer.model", "tokenizer_config.json"];

export interface Completeness {
  /** One line per split set that lacks parts, e.g. `"llama-00002-of-00003.gguf" is missing`. */
  missing: string[];
  /** Non-fatal remarks (an HF folder without config.json or tokenizer files). */
  warnings: string[];
}

/**
 * Checks a model folder's file list (relative paths): every part of each split set
 * (`<name>-00001-of-0000N.gguf`, also sharded `*.safetensors`) must be present, and folders
 * holding safetensors weights should hold `config.json` and a tokenizer file.
 */
export function checkCompleteness(files: readonly string[]): Completeness {
  const missing: string[] = [];
  const warnings: string[] = [];
  const set = new Set(files);
  const sets = new Map<string, { dir: string; base: string; n: number; ext: string; w: number }>();
  for (const f of files) {
    const name = f.slice(f.lastIndexOf("/") + 1);
    const m = SPLIT_RE.exec(name);
    if (!m) continue;
    const dir = parentOf(f);
    const key = `${dir}\0${m[1]}\0${m[3]}\0${m[4]}`;
    sets.set(key, { dir, base: m[1], n: Number(m[3]), ext: m[4], w: m[2].length });
  }
  for (const s of [...sets.values()].sort((a, b) => a.base.localeCompare(b.base))) {
    const absent: number[] = [];
    const total = String(s.n).padStart(s.w, "0");
    for (let i = 1; i <= s.n; i++) {
      const part = joinRel(s.dir, `${s.base}-${String(i).padStart(s.w, "0")}-of-${total}.${s.ext}`);
      if (!set.has(part)) absent.push(i);
    }
    if (absent.length > 0) {
      missing.push(
        `split set "${joinRel(s.dir, `${s.base}-*-of-${total}.${s.ext}`)}" lacks part${
          absent.length > 1 ? "s" : ""
        } ${absent.join(", ")} of ${s.n}`,
      );
    }
  }
  const dirs = new Set(files.filter((f) => f.endsWith(".safetensors")).map(parentOf));
  for (const d of [...dirs].sort()) {
    const where = d === "" ? "" : ` in "${d}"`;
    if (!set.has(joinRel(d, "config.json"))) {
      warnings.push(`safetensors weights without config.json${where}`);
    }
    if (!TOKENIZER_FILES.some((t) => set.has(joinRel(d, t)))) {
      warnings.push(`no tokenizer file (${TOKENIZER_FILES.join(", ")})${where}`);
    }
  }
  return { missing, warnings };
}

/** Nearest existing ancestor of a path and its device. */
async function deviceOf(path: string): Promise<{ path: string; dev: number }> {
  let p = path;
  while (true) {
    try {
      const st = await Deno.stat(p);
      return { path: p, dev: st.dev };
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
      const up = p.slice(0, p.lastIndexOf("/")) || "/";
      if (up === p) throw e;
      p = up;
    }
  }
}

export function validFolderName(name: string): boolean {
  return name !== "" && !name.includes("/") && !name.startsWith(".") && !name.includes("\0");
}

// ---------------------------------------------------------------------------------------------
// Plan

const archiveBase = (p: string) => p.slice(p.lastIndexOf("/") + 1);

/**
 * Plans seeding: for each source, what would be copied, skipped, conflicting or incomplete,
 * and the bytes per target filesystem. Reads folder listings and the installed folders; never
 * writes and never reads file contents (identical-looking folders are hashed at seed time).
 * Throws an integrity error (exit 4) when a folder's files disagree with the bundle's checksums.
 */
export async function planModels(
  sources: readonly ModelSource[],
  opts: PlanOptions,
): Promise<ModelPlan> {
  const items: ModelPlanItem[] = [];
  for (const source of sources) {
    const abs = source.path.startsWith("/") ? source.path : join(opts.bundleDir, source.path);
    const relPath = relativeTo(opts.bundleDir, abs);
    if (source.kind === "folder") {
      items.push(await planFolder(source, abs, relPath, opts));
      continue;
    }
    if (source.kind === "bundle-model") {
      items.push(...await planBundleModel(source, opts));
      continue;
    }
    const st = await Deno.stat(abs);
    const target = source.kind === "hf-cache-archive" ? opts.hfCacheDir : opts.modelsDir;
    items.push({
      source,
      name: archiveBase(relPath),
      target,
      sourcePath: abs,
      action: "extract",
      files: [],
      bytes: st.size,
      writeBytes: st.size,
      estimated: true,
      expected: opts.expected.get(relPath),
      warnings: opts.expected.has(relPath)
        ? []
        : [`"${relPath}" is not listed in the bundle's checksums`],
    });
  }
  const fs = new Map<number, FilesystemUse>();
  for (const it of items) {
    if (it.writeBytes === 0) continue;
    const d = await deviceOf(it.target);
    const u = fs.get(d.dev) ?? { path: d.path, dev: d.dev, bytes: 0, estimated: false };
    u.bytes += it.writeBytes;
    u.estimated ||= it.estimated;
    fs.set(d.dev, u);
  }
  const bytes = items.reduce((s, it) => s + it.bytes, 0);
  opts.progress?.addTotal(bytes);
  return {
    modelsDir: opts.modelsDir,
    hfCacheDir: opts.hfCacheDir,
    items,
    bytes,
    filesystems: [...fs.values()],
    progressAdded: opts.progress !== undefined,
  };
}

function relativeTo(base: string, abs: string): string {
  const b = base.replace(/\/+$/, "");
  return abs.startsWith(b + "/") ? abs.slice(b.length + 1) : abs;
}

/**
 * A Cortex 0.2 bundle model (`models/<served>/files/<path>`, placed at `<models dir>/<path>`):
 * one item per top folder its paths create, planned like a bundle model folder (copy, compare,
 * unchanged, conflict). Each file must exist as a regular file of the size its manifest lists
 * (checked here, before anything is written); its digest (checksums.sha256, and the manifest's)
 * is checked while it is copied.
 */
async function planBundleModel(
  source: Extract<ModelSource, { kind: "bundle-model" }>,
  opts: PlanOptions,
): Promise<ModelPlanItem[]> {
  const refuse = (why: string, hint?: string) =>
    new InstallError(
      "models",
      `Cannot seed model "${source.name}": ${why}`,
      ExitCode.Integrity,
      hint ?? "Re-copy the model from the transfer media, or export it again (Transfer → Export).",
    );
  const groups = new Map<string, PlannedFile[]>();
  for (const f of source.files) {
    const slash = f.path.indexOf("/");
    if (slash < 0) {
      throw refuse(
        `"${f.path}" would lie directly in the models dir, outside a model folder`,
        "Cortex places a model's files under its own folder (the manifest's local_path); " +
          "export the model again.",
      );
    }
    const top = f.path.slice(0, slash);
    const src = join(opts.bundleDir, f.src);
    const st = await lstatOrNull(src);
    if (!st) throw refuse(`"${f.src}" is listed in its manifest but missing from the bundle`);
    if (!st.isFile) throw refuse(`"${f.src}" is not a regular file`);
    if (st.size !== f.bytes) {
      throw refuse(
        `"${f.src}" has ${st.size} bytes, its manifest lists ${f.bytes} (a truncated or ` +
          "changed copy)",
      );
    }
    const g = groups.get(top) ?? [];
    g.push({
      rel: f.path.slice(slash + 1),
      src,
      size: st.size,
      ...(opts.expected.get(f.src) ? { expected: opts.expected.get(f.src) } : {}),
      ...(f.manifestSha256 ? { manifestSha256: f.manifestSha256 } : {}),
    });
    groups.set(top, g);
  }
  const items: ModelPlanItem[] = [];
  for (const [top, files] of [...groups].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    if (!validFolderName(top)) throw refuse(`"${top}" is not a valid folder name`);
    const target = join(opts.modelsDir, top);
    const warnings = files.some((f) => f.expected === undefined)
      ? [
        `model "${source.name}": some files are covered by no checksum (copied unverified but ` +
        "for their manifest's digest)",
      ]
      : [];
    const c = checkCompleteness(files.map((f) => f.rel));
    warnings.push(...c.warnings);
    const size = files.reduce((s, f) => s + f.size, 0);
    const base = {
      source,
      name: groups.size > 1 ? `${source.name}/${top}` : source.name,
      target,
      sourcePath: join(opts.bundleDir, source.path),
      files,
      warnings,
      estimated: false,
    };
    if (c.missing.length > 0) {
      items.push({
        ...base,
        action: "incomplete",
        bytes: 0,
        writeBytes: 0,
        reason: c.missing.join("; "),
      });
      continue;
    }
    items.push(await planTarget(base, size, opts));
  }
  return items;
}

/**
 * What to do with a model folder's target: copy when absent, a conflict when it is not a folder
 * or lists other files or sizes, unchanged when every file is known to hold the bundle's digest,
 * else compare (hashed at seed time).
 */
async function planTarget(
  base: Omit<ModelPlanItem, "action" | "bytes" | "writeBytes">,
  size: number,
  opts: PlanOptions,
): Promise<ModelPlanItem> {
  const st = await lstatOrNull(base.target);
  if (!st) return { ...base, action: "copy", bytes: size, writeBytes: size };
  if (!st.isDirectory) {
    return {
      ...base,
      action: "conflict",
      bytes: 0,
      writeBytes: 0,
      reason: `"${base.target}" exists and is not a folder`,
    };
  }
  const want = new Map<string, TreeEntry>(
    base.files.map((f) => [f.rel, { kind: "file" as const, size: f.size }]),
  );
  const diff = diffListing(want, contentEntries(await listTree(base.target)));
  if (diff) return { ...base, action: "conflict", bytes: 0, writeBytes: 0, reason: diff };
  if (opts.knownDigest && await allKnown(base.target, base.files, opts.knownDigest)) {
    return { ...base, action: "unchanged", bytes: 0, writeBytes: 0 };
  }
  return { ...base, action: "compare", bytes: size, writeBytes: 0 };
}

async function planFolder(
  source: Extract<ModelSource, { kind: "folder" }>,
  abs: string,
  relPath: string,
  opts: PlanOptions,
): Promise<ModelPlanItem> {
  const name = source.name;
  if (!validFolderName(name)) {
    throw new InstallError(
      "models",
      `Cannot seed model "${name}": not a valid folder name`,
      ExitCode.Integrity,
    );
  }
  const target = join(opts.modelsDir, name);
  const tree = await listTree(abs);
  const files: PlannedFile[] = [];
  const prefix = relPath + "/";
  for (const [rel, e] of tree) {
    if (e.kind === "dir") continue;
    if (e.kind !== "file") {
      throw new InstallError(
        "models",
        `Cannot seed model "${name}": "${rel}" is a ${e.kind}, not a regular file`,
        ExitCode.Integrity,
        "Bundle model folders must hold plain files; replace links with the files they name.",
      );
    }
    files.push({
      rel,
      src: join(abs, rel),
      size: e.size,
      expected: opts.expected.get(prefix + rel),
    });
  }
  const warnings: string[] = [];
  const listed = [...opts.expected.keys()].filter((k) => k.startsWith(prefix));
  if (listed.length === 0) {
    warnings.push(`"${relPath}" is not covered by the bundle's checksums: copied unverified`);
  } else {
    const unlisted = files.filter((f) => f.expected === undefined);
    if (unlisted.length > 0) {
      throw new InstallError(
        "models",
        `Cannot seed model "${name}": "${prefix}${
          unlisted[0].rel
        }" is not listed in the bundle's checksums`,
        ExitCode.Integrity,
        "Only listed files are installed; re-create the bundle's checksums.sha256 or remove the file.",
      );
    }
    const have = new Set(files.map((f) => prefix + f.rel));
    const absent = listed.filter((k) => !have.has(k));
    if (absent.length > 0) {
      throw new InstallError(
        "models",
        `Cannot seed model "${name}": "${
          absent[0]
        }" is listed in the bundle's checksums but missing`,
        ExitCode.Integrity,
        "Re-copy the model folder from the transfer media.",
      );
    }
  }
  const c = checkCompleteness(files.map((f) => f.rel));
  warnings.push(...c.warnings);
  const size = files.reduce((s, f) => s + f.size, 0);
  const base = { source, name, target, sourcePath: abs, files, warnings, estimated: false };
  if (c.missing.length > 0) {
    return {
      ...base,
      action: "incomplete",
      bytes: 0,
      writeBytes: 0,
      reason: c.missing.join("; "),
    };
  }
  const st = await lstatOrNull(target);
  if (!st) return { ...base, action: "copy", bytes: size, writeBytes: size };
  if (!st.isDirectory) {
    return {
      ...base,
      action: "conflict",
      bytes: 0,
      writeBytes: 0,
      reason: `"${target}" exists and is not a folder`,
    };
  }
  const want = contentEntries(tree);
  const diff = diffListing(want, contentEntries(await listTree(target)));
  if (diff) return { ...base, action: "conflict", bytes: 0, writeBytes: 0, reason: diff };
  if (opts.knownDigest && await allKnown(target, files, opts.knownDigest)) {
    return { ...base, action: "unchanged", bytes: 0, writeBytes: 0 };
  }
  return { ...base, action: "compare", bytes: size, writeBytes: 0 };
}

/** Whether every installed file is known (unchanged since hashed) to hold the bundle's digest. */
async function allKnown(
  target: string,
  files: readonly PlannedFile[],
  knownDigest: NonNullable<PlanOptions["knownDigest"]>,
): Promise<boolean> {
  for (const f of files) {
    const want = f.expected ?? f.manifestSha256;
    if (want === undefined) return false;
    const path = join(target, f.rel);
    const st = await lstatOrNull(path);
    if (!st?.isFile || knownDigest(path, st) !== want) return false;
  }
  return true;
}
