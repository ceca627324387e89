/**
 * The `models` step: seed model folders and the Admin-UI archives into the models dir and the
 * HF cache. Every byte is hashed while it is copied (one read), everything is written into a
 * staging folder on the target filesystem, fsynced, and renamed into place only when complete
 * and verified, so Cortex never sees a half-copied model. Existing model files are never
 * replaced or deleted: identical folders are skipped, different ones are reported as conflicts.
 *
 * Shape: `planModels` (reads only: lists folders, compares with what is installed, sums bytes
 * per filesystem) and `seedModels` (the writes). The pure parts (completeness, path safety) are
 * separate functions with their own tests.
 */
import { Readable } from "node:stream";
import type { ReadableStream as NodeReadableStream } from "node:stream/web";
import { createHash } from "node:crypto";
// @deno-types="npm:@types/tar-stream@3.1.5"
import tar from "tar-stream";
import type { Context } from "../../context.ts";
import type { ModelSource } from "../../bundle/types.ts";
import { ExitCode, InstallError, InterruptedError, throwIfAborted } from "../../errors.ts";
import { STAGING_PREFIX } from "../../layout.ts";
import { copyHashed, fsyncDir, hashFile, writeStreamHashed } from "../../copy.ts";
import {
  hasSymlinkAncestor,
  joinRel,
  normalizeEntryPath,
  parentOf,
  resolveInRoot,
  stripRoot,
  symlinkStaysInside,
} from "../safepath.ts";

// ---------------------------------------------------------------------------------------------
// Types

export type ModelVerdict = "copied" | "linked" | "skipped" | "conflict" | "incomplete";

/** One file of a bundle model folder. */
export interface PlannedFile {
  /** Path inside the model folder, with forward slashes. */
  rel: string;
  /** Absolute source path. */
  src: string;
  size: number;
  /** Lower-case hex SHA-256 from the bundle's checksums, when listed. */
  expected?: string;
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

export interface ModelResult {
  name: string;
  target: string;
  verdict: ModelVerdict;
  /** Files written (copied or linked), or compared for a skip. */
  files: number;
  /** Bytes written (copied or linked), or compared for a skip. */
  bytes: number;
  warnings: string[];
}

export interface ModelsResult {
  models: ModelResult[];
  /** Bytes written in all. */
  bytes: number;
  conflicts: number;
  incomplete: number;
}

export interface SeedOptions {
  /** Hardlink files from the bundle instead of copying, when on the same filesystem. */
  link?: boolean;
  /**
   * Called once per model folder whose installed files were just hashed (copied, linked, or
   * compared equal), so that the caller can record them (the install: `markVerified` for each
   * file and `recordModel`) and plan them `unchanged` next time.
   */
  onVerified?: (model: VerifiedModel) => void | Promise<void>;
}

/** An installed model folder whose files' digests are known, with the stat each file had. */
export interface VerifiedModel {
  target: string;
  files: VerifiedFile[];
  /** Sum of the files' sizes. */
  bytes: number;
  /** SHA-256 over the sorted `<sha256>  <relative path>\n` lines (see treeDigest). */
  sha256Tree: string;
}

export interface VerifiedFile {
  /** Absolute path of the installed file. */
  path: string;
  /** Path inside the model folder. */
  rel: string;
  /** The file's stat, taken when its content was known to hash to `sha256`. */
  stat: Deno.FileInfo;
  sha256: string;
  /** A moment at which the content was that; a file modified at or after it is not trusted. */
  verifiedAt: Date;
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

/**
 * The digest of a folder's content: SHA-256 over its files' `<sha256>  <relative path>\n`
 * lines (the `sha256sum` format) sorted by path.
 */
export function treeDigest(files: readonly { rel: string; sha256: string }[]): string {
  const sorted = [...files].sort((a, b) => (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0));
  return createHash("sha256").update(sorted.map((f) => `${f.sha256}  ${f.rel}\n`).join(""))
    .digest("hex");
}

/** `3f2a9c1d0b7e…` for messages; the full digest goes into the detail. */
const short = (hex: string) => `${hex.slice(0, 12)}…`;

// Unsafe archives are integrity failures (exit 4), not preflight ones: the archive is part of
// the bundle and covered by its checksums, so a hostile or malformed entry means the bundle's
// content cannot be trusted. The fix is a new bundle, not a change to this host.
function unsafeEntry(archive: string, entry: string, why: string): InstallError {
  return new InstallError(
    "models",
    `Cannot extract "${archive}": entry "${entry}" ${why}`,
    ExitCode.Integrity,
    "The archive was refused as a whole and nothing from it was installed; re-create the bundle from a trusted source.",
  );
}

function digestMismatch(what: string, file: string, actual: string, expected: string) {
  return new InstallError(
    "models",
    `Cannot seed ${what}: sha256 of "${file}" is ${short(actual)}, the bundle lists ${
      short(expected)
    }`,
    ExitCode.Integrity,
    "Nothing was installed for it; re-copy the file from the transfer media.",
    `sha256 ${actual}\nbundle ${expected}`,
  );
}

// ---------------------------------------------------------------------------------------------
// Small fs helpers

const join = (...p: string[]) => p.filter((x) => x !== "").join("/").replace(/\/{2,}/g, "/");

async function lstatOrNull(path: string): Promise<Deno.FileInfo | null> {
  try {
    return await Deno.lstat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
}

interface TreeEntry {
  kind: "file" | "dir" | "symlink" | "other";
  size: number;
  link?: string;
}

/** Lists a folder recursively without following symlinks: relative path -> entry. */
async function listTree(root: string): Promise<Map<string, TreeEntry>> {
  const out = new Map<string, TreeEntry>();
  const walk = async (rel: string) => {
    const entries: Deno.DirEntry[] = [];
    for await (const e of Deno.readDir(join(root, rel))) entries.push(e);
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of entries) {
      const r = joinRel(rel, e.name);
      const abs = join(root, r);
      if (e.isSymlink) {
        out.set(r, { kind: "symlink", size: 0, link: await Deno.readLink(abs) });
      } else if (e.isDirectory) {
        out.set(r, { kind: "dir", size: 0 });
        await walk(r);
      } else if (e.isFile) {
        out.set(r, { kind: "file", size: (await Deno.lstat(abs)).size });
      } else {
        out.set(r, { kind: "other", size: 0 });
      }
    }
  };
  await walk("");
  return out;
}

/** Files and symlinks only (empty folders do not make content differ). */
function contentEntries(tree: Map<string, TreeEntry>): Map<string, TreeEntry> {
  return new Map([...tree].filter(([, e]) => e.kind !== "dir"));
}

/** First difference in file list, kinds, sizes or link texts; null when they agree. */
function diffListing(
  want: Map<string, TreeEntry>,
  have: Map<string, TreeEntry>,
): string | null {
  for (const [rel, w] of want) {
    const h = have.get(rel);
    if (!h) return `"${rel}" is missing in the installed folder`;
    if (h.kind !== w.kind) return `"${rel}" is a ${h.kind} in the installed folder`;
    if (w.kind === "file" && h.size !== w.size) {
      return `"${rel}" has ${h.size} bytes installed, the bundle has ${w.size}`;
    }
    if (w.kind === "symlink" && h.link !== w.link) return `"${rel}" links elsewhere`;
  }
  for (const rel of have.keys()) {
    if (!want.has(rel)) return `"${rel}" is in the installed folder but not in the bundle`;
  }
  return null;
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

async function fsyncTree(root: string, tree: Map<string, TreeEntry>): Promise<void> {
  const dirs = [...tree].filter(([, e]) => e.kind === "dir").map(([r]) => r);
  dirs.sort((a, b) => b.split("/").length - a.split("/").length);
  for (const d of dirs) await fsyncDir(join(root, d));
  await fsyncDir(root);
}

/** Removes a staging folder (never follows symlinks; hardlinks only lose a name). */
async function removeStaging(path: string): Promise<void> {
  try {
    await Deno.remove(path, { recursive: true });
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
}

// Cortex lists the direct subfolders of the models dir, so a staging folder there could show up
// as a model; a dot-prefixed name is the best we can do (the UI and most tools skip hidden
// folders), and the rename makes the real folder appear in one step.
const stagingName = (what: string) =>
  `${STAGING_PREFIX}${what.replace(/[^A-Za-z0-9._-]/g, "_")}-${Deno.pid}`;

function validFolderName(name: string): boolean {
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
    if (f.expected === undefined) return false;
    const path = join(target, f.rel);
    const st = await lstatOrNull(path);
    if (!st?.isFile || knownDigest(path, st) !== f.expected) return false;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Seed

/**
 * Seeds the planned models. Folders are copied (or hardlinked with `link`) into a staging folder
 * beside the target, hashed in the same pass, fsynced and renamed into place; archives are
 * extracted into staging, checked entry by entry, and their model folders renamed into place
 * (the HF cache is merged: new files added, identical ones skipped, different ones reported).
 * A digest mismatch or an unsafe archive entry throws an integrity error (exit 4) after removing
 * the staging folder; an interruption throws InterruptedError after the same cleanup.
 * Conflicts and incomplete models are reported in the result and the run goes on.
 */
export async function seedModels(
  ctx: Context,
  plan: ModelPlan,
  opts: SeedOptions = {},
): Promise<ModelsResult> {
  if (!plan.progressAdded) ctx.progress.addTotal(plan.bytes);
  const models: ModelResult[] = [];
  for (const item of plan.items) {
    throwIfAborted(ctx.signal);
    if (item.source.kind === "folder") {
      models.push(await seedFolder(ctx, plan, item, opts));
    } else {
      models.push(...await seedArchive(ctx, plan, item));
    }
  }
  for (const m of models) {
    if (m.verdict === "conflict" || m.verdict === "incomplete") {
      ctx.log.warn(`model "${m.name}": ${m.verdict}: ${m.warnings.join("; ")}`);
    }
  }
  return {
    models,
    bytes: models.reduce((s, m) => s + (m.verdict === "skipped" ? 0 : m.bytes), 0),
    conflicts: models.filter((m) => m.verdict === "conflict").length,
    incomplete: models.filter((m) => m.verdict === "incomplete").length,
  };
}

async function seedFolder(
  ctx: Context,
  plan: ModelPlan,
  item: ModelPlanItem,
  opts: SeedOptions,
): Promise<ModelResult> {
  const res = (verdict: ModelVerdict, files: number, bytes: number, extra: string[] = []) => ({
    name: item.name,
    target: item.target,
    verdict,
    files,
    bytes,
    warnings: [...item.warnings, ...extra],
  });
  if (item.action === "incomplete") return res("incomplete", 0, 0, [item.reason ?? ""]);
  if (item.action === "conflict") return res("conflict", 0, 0, [conflictLine(item, item.reason)]);
  const total = item.files.reduce((s, f) => s + f.size, 0);
  // Known unchanged since it was hashed (planModels' knownDigest): nothing to read.
  if (item.action === "unchanged") return res("skipped", item.files.length, total);
  const advance = (n: number) => ctx.progress.advance(n);
  const verified: VerifiedFile[] = [];
  if (item.action === "compare") {
    ctx.progress.label(`compare model ${item.name}`);
    for (const f of item.files) {
      const want = f.expected ?? (await hashFile(f.src, { signal: ctx.signal })).sha256;
      const path = join(item.target, f.rel);
      // The stat and the clock before hashing: a write during the hash shows up next time.
      const stat = await Deno.lstat(path);
      const verifiedAt = ctx.now();
      const have = await hashFile(path, { signal: ctx.signal, onBytes: advance });
      if (have.sha256 !== want) {
        return res("conflict", 0, 0, [
          conflictLine(
            item,
            `"${f.rel}" differs (sha256 ${short(have.sha256)}, the bundle has ${short(want)})`,
          ),
        ]);
      }
      verified.push({ path, rel: f.rel, stat, sha256: have.sha256, verifiedAt });
    }
    await reportVerified(opts, item.target, verified);
    return res("skipped", item.files.length, total);
  }

  // action === "copy"
  const staging = join(plan.modelsDir, stagingName(item.name));
  await removeStaging(staging);
  await Deno.mkdir(plan.modelsDir, { recursive: true });
  const extra: string[] = [];
  let linking = false;
  if (opts.link) {
    const a = await Deno.stat(item.files[0]?.src ?? plan.modelsDir);
    const b = await Deno.stat(plan.modelsDir);
    linking = a.dev === b.dev;
    if (!linking) extra.push("--link: the bundle is on another filesystem; files were copied");
  }
  ctx.progress.label(`${linking ? "link" : "copy"} model ${item.name}`);
  let bytes = 0;
  const digests = new Map<string, string>();
  const linkedStats = new Map<string, Omit<VerifiedFile, "path" | "rel">>();
  try {
    await Deno.mkdir(staging, { mode: 0o755 });
    const dirs = new Set<string>();
    for (const f of item.files) {
      const d = parentOf(f.rel);
      if (d !== "" && !dirs.has(d)) {
        await Deno.mkdir(join(staging, d), { recursive: true, mode: 0o755 });
        dirs.add(d);
      }
      const dst = join(staging, f.rel);
      let got;
      if (linking) {
        // Verify the source first (one read), then give it a second name.
        const before = await Deno.stat(f.src);
        const verifiedAt = ctx.now();
        got = await hashFile(f.src, { signal: ctx.signal, onBytes: advance });
        if (f.expected !== undefined && got.sha256 !== f.expected) {
          throw digestMismatch(`model "${item.name}"`, f.rel, got.sha256, f.expected);
        }
        await Deno.link(f.src, dst);
        // The link moved the ctime: keep the stat taken after it, if the content did not move.
        const after = await Deno.stat(dst);
        if (after.size === before.size && after.mtime?.getTime() === before.mtime?.getTime()) {
          linkedStats.set(f.rel, { stat: after, sha256: got.sha256, verifiedAt });
        }
      } else {
        got = await copyHashed(f.src, dst, { signal: ctx.signal, onBytes: advance });
        if (f.expected !== undefined && got.sha256 !== f.expected) {
          throw digestMismatch(`model "${item.name}"`, f.rel, got.sha256, f.expected);
        }
      }
      bytes += got.bytes;
      digests.set(f.rel, got.sha256);
    }
    for (const d of [...dirs].sort((a, b) => b.length - a.length)) {
      await fsyncDir(join(staging, d));
    }
    await fsyncDir(staging);
    throwIfAborted(ctx.signal);
    // rename(2) would replace an empty folder created meanwhile: check right before it.
    if (await lstatOrNull(item.target)) {
      await removeStaging(staging);
      return res("conflict", 0, 0, [
        ...extra,
        conflictLine(item, "the folder appeared while it was being copied"),
      ]);
    }
    await Deno.rename(staging, item.target);
    await fsyncDir(plan.modelsDir);
  } catch (e) {
    await removeStaging(staging);
    throw ctx.signal.aborted && !(e instanceof InstallError) ? new InterruptedError() : e;
  }
  if (opts.onVerified) {
    // Copied files hold what was hashed as of the last write, which ended before this stat.
    const verified: VerifiedFile[] = [];
    for (const f of item.files) {
      const path = join(item.target, f.rel);
      const linked = linkedStats.get(f.rel);
      if (linking && !linked) continue;
      const stat = linked?.stat ?? await Deno.lstat(path);
      const verifiedAt = linked?.verifiedAt ?? ctx.now();
      verified.push({ path, rel: f.rel, stat, sha256: digests.get(f.rel)!, verifiedAt });
    }
    await reportVerified(opts, item.target, verified);
  }
  return res(linking ? "linked" : "copied", item.files.length, bytes, extra);
}

async function reportVerified(
  opts: SeedOptions,
  target: string,
  files: VerifiedFile[],
): Promise<void> {
  if (!opts.onVerified) return;
  await opts.onVerified({
    target,
    files,
    bytes: files.reduce((s, f) => s + f.stat.size, 0),
    sha256Tree: treeDigest(files),
  });
}

function conflictLine(item: { name: string; target: string }, why?: string): string {
  return `"${item.target}" already exists with different content${
    why ? ` (${why})` : ""
  }; it was kept as is — move it away and re-run to install the bundle's version`;
}

// ---------------------------------------------------------------------------------------------
// Archives

interface Staged {
  /** Regular files by path relative to the staging root: size and SHA-256. */
  files: Map<string, { size: number; sha256: string }>;
  links: Map<string, string>;
}

type ArchiveLayout =
  | { kind: "models"; root: "models" }
  | { kind: "model" }
  | { kind: "hf-cache"; root: "hf-cache" };

function layoutOf(source: ModelSource): ArchiveLayout {
  switch (source.kind) {
    case "models-archive":
      return { kind: "models", root: "models" };
    case "hf-cache-archive":
      return { kind: "hf-cache", root: "hf-cache" };
    default:
      return { kind: "model" };
  }
}

async function seedArchive(
  ctx: Context,
  plan: ModelPlan,
  item: ModelPlanItem,
): Promise<ModelResult[]> {
  const layout = layoutOf(item.source);
  const destRoot = layout.kind === "hf-cache" ? plan.hfCacheDir : plan.modelsDir;
  await Deno.mkdir(destRoot, { recursive: true });
  const staging = join(destRoot, stagingName(item.name.replace(/\.tar\.gz$/, "")));
  await removeStaging(staging);
  try {
    await Deno.mkdir(staging, { mode: 0o755 });
    const staged = await extractInto(ctx, item, layout, staging);
    const tree = await listTree(staging);
    await fsyncTree(staging, tree);
    throwIfAborted(ctx.signal);
    const out = layout.kind === "hf-cache"
      ? await mergeHfCache(ctx, staging, plan.hfCacheDir, staged)
      : await promoteModels(ctx, item, staging, plan.modelsDir, staged, tree);
    await removeStaging(staging);
    return out;
  } catch (e) {
    await removeStaging(staging);
    throw ctx.signal.aborted && !(e instanceof InstallError) ? new InterruptedError() : e;
  }
}

/** Counts, hashes and checks abort on the compressed bytes as they are read. */
function hashingTap(
  ctx: Context,
  hash: ReturnType<typeof createHash>,
): TransformStream<Uint8Array, Uint8Array> {
  return new TransformStream({
    transform(chunk, ctl) {
      if (ctx.signal.aborted) throw new InterruptedError();
      hash.update(chunk);
      ctx.progress.advance(chunk.length);
      ctl.enqueue(chunk);
    },
  });
}

async function drain(entry: AsyncIterable<unknown>): Promise<void> {
  for await (const _ of entry) { /* skip */ }
}

/**
 * Streams a .tar.gz into `staging`, refusing unsafe entries before anything of them is written,
 * and checks the archive's digest at the end. Returns what was staged.
 */
async function extractInto(
  ctx: Context,
  item: ModelPlanItem,
  layout: ArchiveLayout,
  staging: string,
): Promise<Staged> {
  const archive = item.name;
  const abs = item.sourcePath;
  ctx.progress.label(`extract ${archive}`);
  const hash = createHash("sha256");
  const file = await Deno.open(abs, { read: true });
  const web = file.readable.pipeThrough(hashingTap(ctx, hash)).pipeThrough(
    new DecompressionStream("gzip") as unknown as TransformStream<Uint8Array, Uint8Array>,
  );
  const src = Readable.fromWeb(web as unknown as NodeReadableStream<Uint8Array>);
  const extract = tar.extract();
  src.on("error", (e) => extract.destroy(e));
  src.pipe(extract);
  const staged: Staged = { files: new Map(), links: new Map() };
  const dirs = new Set<string>([""]);
  let singleRoot: string | undefined;
  const refuse = (entry: string, why: string) => unsafeEntry(archive, entry, why);
  try {
    for await (const entry of extract) {
      const h = entry.header;
      const norm = normalizeEntryPath(h.name);
      if (!norm.ok) throw refuse(h.name, norm.reason);
      let rel: string | null;
      if (layout.kind === "model") {
        const first = norm.path.split("/")[0];
        singleRoot ??= first;
        if (first !== singleRoot) {
          throw refuse(h.name, `is outside the archive's root folder "${singleRoot}/"`);
        }
        if (!norm.path.includes("/") && h.type !== "directory") {
          throw refuse(h.name, "is not inside the model's folder");
        }
        rel = norm.path;
      } else {
        rel = stripRoot(norm.path, layout.root);
        if (rel === null) {
          throw refuse(h.name, `is outside the archive's root folder "${layout.root}/"`);
        }
      }
      if (rel === "" || (layout.kind === "model" && rel === singleRoot)) {
        if (h.type !== "directory") throw refuse(h.name, "replaces the archive's root folder");
        await drain(entry);
        continue;
      }
      if (hasSymlinkAncestor(rel, staged.links)) {
        throw refuse(h.name, "would be written through a symbolic link");
      }
      const seen = staged.files.has(rel) || staged.links.has(rel) || dirs.has(rel);
      if (seen && !(h.type === "directory" && dirs.has(rel))) {
        throw refuse(h.name, "appears twice");
      }
      const dst = join(staging, rel);
      const ensureParent = async () => {
        const p = parentOf(rel!);
        if (!dirs.has(p)) {
          await Deno.mkdir(join(staging, p), { recursive: true, mode: 0o755 });
          let q = p;
          while (q !== "" && !dirs.has(q)) {
            dirs.add(q);
            q = parentOf(q);
          }
        }
      };
      switch (h.type) {
        case "file":
        case "contiguous-file": {
          await ensureParent();
          const got = await writeStreamHashed(entry, dst, { signal: ctx.signal });
          staged.files.set(rel, { size: got.bytes, sha256: got.sha256 });
          break;
        }
        case "directory":
          await Deno.mkdir(dst, { recursive: true, mode: 0o755 });
          dirs.add(rel);
          await drain(entry);
          break;
        case "symlink": {
          const target = h.linkname ?? "";
          if (!symlinkStaysInside(rel, target, staged.links)) {
            throw refuse(h.name, `is a symbolic link to "${target}", outside the archive`);
          }
          await ensureParent();
          await Deno.symlink(target, dst);
          staged.links.set(rel, target);
          await drain(entry);
          break;
        }
        case "link": {
          const t = normalizeEntryPath(h.linkname ?? "");
          const tRel = !t.ok
            ? null
            : layout.kind === "model"
            ? t.path
            : stripRoot(t.path, layout.root);
          const info = tRel === null ? undefined : staged.files.get(tRel);
          if (
            tRel === null || info === undefined || resolveInRoot(tRel, staged.links) !== tRel
          ) {
            throw refuse(
              h.name,
              `is a hard link to "${h.linkname}", which is not a file extracted before it`,
            );
          }
          await ensureParent();
          await Deno.link(join(staging, tRel), dst);
          staged.files.set(rel, info);
          await drain(entry);
          break;
        }
        default:
          throw refuse(
            h.name,
            `is a ${h.type ?? "unknown"} entry; only files, folders and links are allowed`,
          );
      }
    }
  } catch (e) {
    src.destroy();
    extract.destroy();
    if (e instanceof InstallError || e instanceof InterruptedError) throw e;
    if (ctx.signal.aborted) throw new InterruptedError();
    throw new InstallError(
      "models",
      `Cannot extract "${archive}": ${e instanceof Error ? e.message : String(e)}`,
      ExitCode.Integrity,
      "The archive is damaged or not a .tar.gz; re-copy it from the transfer media.",
    );
  } finally {
    try {
      file.close();
    } catch { /* already closed by the stream */ }
  }
  // Links are checked again with the complete set: a later link can change where an earlier
  // one leads (a -> b/.., b -> .).
  for (const [rel, target] of staged.links) {
    if (!symlinkStaysInside(rel, target, new Map([...staged.links].filter(([k]) => k !== rel)))) {
      throw refuse(rel, `is a symbolic link to "${target}", outside the archive`);
    }
  }
  if (staged.links.size > 0) {
    for (const rel of staged.links.keys()) {
      if (resolveInRoot(rel, staged.links) === null) {
        throw refuse(rel, "is a symbolic link that leads outside the archive");
      }
    }
  }
  const digest = hash.digest("hex");
  if (item.expected !== undefined && digest !== item.expected) {
    throw digestMismatch(`"${archive}"`, archive, digest, item.expected);
  }
  return staged;
}

/** Moves each complete model folder of a staged archive into the models dir. */
async function promoteModels(
  ctx: Context,
  item: ModelPlanItem,
  staging: string,
  modelsDir: string,
  staged: Staged,
  tree: Map<string, TreeEntry>,
): Promise<ModelResult[]> {
  const out: ModelResult[] = [];
  const units = [...tree].filter(([r]) => !r.includes("/"));
  for (const [name, e] of units) {
    const target = join(modelsDir, name);
    const res = (verdict: ModelVerdict, files: number, bytes: number, w: string[] = []) => ({
      name,
      target,
      verdict,
      files,
      bytes,
      warnings: [...item.warnings, ...w],
    });
    if (e.kind !== "dir") {
      ctx.log.warn(`"${item.name}": "${name}" is not inside a model folder; it was not installed`);
      continue;
    }
    if (!validFolderName(name)) {
      ctx.log.warn(`"${item.name}": hidden folder "${name}" was not installed`);
      continue;
    }
    const sub = new Map<string, TreeEntry>();
    for (const [r, te] of tree) if (r.startsWith(name + "/")) sub.set(r.slice(name.length + 1), te);
    const fileRels = [...sub].filter(([, te]) => te.kind !== "dir").map(([r]) => r);
    const bytes = [...sub.values()].reduce((s, te) => s + (te.kind === "file" ? te.size : 0), 0);
    const c = checkCompleteness(fileRels);
    if (c.missing.length > 0) {
      out.push(res("incomplete", 0, 0, [...c.warnings, c.missing.join("; ")]));
      continue;
    }
    const st = await lstatOrNull(target);
    if (!st) {
      await Deno.rename(join(staging, name), target);
      await fsyncDir(modelsDir);
      out.push(res("copied", fileRels.length, bytes, c.warnings));
      continue;
    }
    if (!st.isDirectory) {
      out.push(res("conflict", 0, 0, [conflictLine({ name, target }, "it is not a folder")]));
      continue;
    }
    const diff = diffListing(contentEntries(sub), contentEntries(await listTree(target)));
    if (diff) {
      out.push(res("conflict", 0, 0, [conflictLine({ name, target }, diff)]));
      continue;
    }
    ctx.progress.label(`compare model ${name}`);
    ctx.progress.addTotal(bytes);
    let why: string | undefined;
    for (const r of fileRels) {
      const want = staged.files.get(joinRel(name, r));
      if (!want) continue; // a symlink: its text was compared above
      const have = await hashFile(join(target, r), {
        signal: ctx.signal,
        onBytes: (n) => ctx.progress.advance(n),
      });
      if (have.sha256 !== want.sha256) {
        why = `"${r}" differs (sha256 ${short(have.sha256)}, the archive has ${
          short(want.sha256)
        })`;
        break;
      }
    }
    out.push(
      why
        ? res("conflict", 0, 0, [conflictLine({ name, target }, why)])
        : res("skipped", fileRels.length, bytes, c.warnings),
    );
  }
  return out;
}

/**
 * Merges a staged HF cache into the real one without replacing anything: a folder that does not
 * exist yet (a new `hub/models--org--name`, a new snapshot) is renamed in whole; inside existing
 * folders each new file or link is renamed into place, identical ones are skipped and different
 * ones reported. Results are grouped per repo folder (`hub/models--org--name`).
 */
async function mergeHfCache(
  ctx: Context,
  staging: string,
  hfCacheDir: string,
  staged: Staged,
): Promise<ModelResult[]> {
  const groups = new Map<string, ModelResult>();
  const unitOf = (rel: string) => {
    const p = rel.split("/");
    return p[0] === "hub" && p.length >= 2 ? `hub/${p[1]}` : "(other files)";
  };
  const group = (rel: string) => {
    const u = unitOf(rel);
    let g = groups.get(u);
    if (!g) {
      g = {
        name: u,
        target: u.startsWith("hub/") ? join(hfCacheDir, u) : hfCacheDir,
        verdict: "skipped",
        files: 0,
        bytes: 0,
        warnings: [],
      };
      groups.set(u, g);
    }
    return g;
  };
  const add = (rel: string, files: number, bytes: number) => {
    const g = group(rel);
    if (g.verdict === "skipped") g.verdict = "copied";
    g.files += files;
    g.bytes += bytes;
  };
  const conflict = (rel: string, why: string) => {
    const g = group(rel);
    g.verdict = "conflict";
    g.warnings.push(`"${rel}" ${why}; the installed one was kept`);
  };
  const touched = new Set<string>();
  const walk = async (rel: string): Promise<void> => {
    const entries: Deno.DirEntry[] = [];
    for await (const e of Deno.readDir(join(staging, rel))) entries.push(e);
    // blobs/ before refs/ before snapshots/: links are placed after what they point to.
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of entries) {
      throwIfAborted(ctx.signal);
      const r = joinRel(rel, e.name);
      const from = join(staging, r);
      const to = join(hfCacheDir, r);
      const st = await lstatOrNull(to);
      if (!st) {
        if (e.isDirectory && !r.includes("/")) {
          // A new top-level folder (hub/): create it and place its repo folders one by one.
          await Deno.mkdir(to, { mode: 0o755 });
          touched.add(parentOf(to));
          await walk(r);
          continue;
        }
        if (e.isDirectory) {
          let files = 0;
          let bytes = 0;
          for (const [, te] of await listTree(from)) {
            if (te.kind === "file") bytes += te.size;
            if (te.kind !== "dir") files++;
          }
          await Deno.rename(from, to);
          add(r, files, bytes);
        } else {
          await Deno.rename(from, to);
          add(r, 1, e.isFile ? (staged.files.get(r)?.size ?? 0) : 0);
        }
        touched.add(parentOf(to));
        continue;
      }
      if (e.isDirectory) {
        if (!st.isDirectory) conflict(r, "is installed as a file");
        else await walk(r);
      } else if (e.isSymlink) {
        const want = staged.links.get(r);
        if (!st.isSymlink) conflict(r, "is installed as a file");
        else if ((await Deno.readLink(to)) !== want) conflict(r, "links elsewhere");
        else group(r);
      } else {
        const want = staged.files.get(r);
        if (!st.isFile || !want) {
          conflict(r, "is installed as another kind of entry");
          continue;
        }
        if (st.size !== want.size) {
          conflict(r, `has ${st.size} bytes installed, the archive has ${want.size}`);
          continue;
        }
        ctx.progress.addTotal(st.size);
        const have = await hashFile(to, {
          signal: ctx.signal,
          onBytes: (n) => ctx.progress.advance(n),
        });
        if (have.sha256 !== want.sha256) {
          conflict(
            r,
            `differs (sha256 ${short(have.sha256)}, the archive has ${short(want.sha256)})`,
          );
        } else {
          const g = group(r);
          g.files += g.verdict === "skipped" ? 1 : 0;
        }
      }
    }
  };
  await walk("");
  for (const d of [...touched].sort((a, b) => b.length - a.length)) await fsyncDir(d);
  return [...groups.values()].sort((a, b) => a.name.localeCompare(b.name));
}

// ---------------------------------------------------------------------------------------------
// Cleanup

/**
 * Removes staging folders left by a killed run in the models dir and the HF cache dir (only
 * names starting with STAGING_PREFIX; those of another live cortex-install process are kept).
 * Returns the removed paths.
 */
export async function cleanStaging(modelsDir: string, hfCacheDir: string): Promise<string[]> {
  const removed: string[] = [];
  for (const dir of new Set([modelsDir, hfCacheDir])) {
    let entries: Deno.DirEntry[] = [];
    try {
      for await (const e of Deno.readDir(dir)) entries.push(e);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) continue;
      throw e;
    }
    entries = entries.filter((e) => e.name.startsWith(STAGING_PREFIX));
    for (const e of entries) {
      const pid = Number(/-(\d+)$/.exec(e.name)?.[1]);
      if (Number.isInteger(pid) && pid !== Deno.pid && await processAlive(pid)) continue;
      await removeStaging(join(dir, e.name));
      removed.push(join(dir, e.name));
    }
  }
  return removed;
}

async function processAlive(pid: number): Promise<boolean> {
  try {
    const cmd = await Deno.readTextFile(`/proc/${pid}/cmdline`);
    return /deno|cortex-install/.test(cmd);
  } catch {
    return false;
  }
}
