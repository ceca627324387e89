/**
 * The models step's writes: `seedModels` seeds the planned model folders and Admin-UI archives
 * into the models dir and the HF cache. Every byte is hashed while it is copied (one read),
 * everything is written into a staging folder on the target filesystem, fsynced, and renamed into
 * place only when complete and verified, so Cortex never sees a half-copied model. Existing model
 * files are never replaced or deleted: identical folders are skipped, different ones are
 * reported as conflicts. Archives are handled in archive.ts, the HF cache merge in hfcache.ts.
 */
import type { Context } from "../../context.ts";
import { asInterrupted, ExitCode, InstallError, throwIfAborted } from "../../errors.ts";
import { hashFile, shortDigest as short } from "../../hash.ts";
import { copyHashed } from "../../copy.ts";
import { fsyncDir } from "../../fsutil.ts";
import { parentOf } from "../safepath.ts";
import type { ModelPlan, ModelPlanItem, PlannedFile } from "./plan.ts";
import { join, lstatOrNull, treeDigest } from "./tree.ts";
import { removeStaging, stagingName } from "./staging.ts";
import { seedArchive } from "./archive.ts";

export type ModelVerdict = "copied" | "linked" | "skipped" | "conflict" | "incomplete";

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

export function digestMismatch(what: string, file: string, actual: string, expected: string) {
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
  // Model folders are staged and verified first and put in place together at the end: a file
  // that fails its digest leaves no model folder of this run behind.
  const staged: Staged[] = [];
  try {
    for (const item of plan.items) {
      throwIfAborted(ctx.signal);
      if (item.source.kind === "folder" || item.source.kind === "bundle-model") {
        const r = await seedFolder(ctx, plan, item, opts, staged);
        models.push(r);
      } else {
        models.push(...await seedArchive(ctx, plan, item));
      }
    }
  } catch (e) {
    for (const st of staged) await removeStaging(st.staging);
    throw asInterrupted(e, ctx.signal);
  }
  for (let i = 0; i < staged.length; i++) {
    const st = staged[i];
    try {
      await place(ctx, plan, st, opts);
    } catch (e) {
      for (const rest of staged.slice(i)) await removeStaging(rest.staging);
      throw asInterrupted(e, ctx.signal);
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

/** A model folder copied and verified in its staging folder, waiting to be put in place. */
interface Staged {
  item: ModelPlanItem;
  staging: string;
  linking: boolean;
  digests: Map<string, string>;
  linkedStats: Map<string, Omit<VerifiedFile, "path" | "rel">>;
  /** The result reported for it; becomes a conflict when the target appeared meanwhile. */
  result: ModelResult;
}

/**
 * Puts a staged model folder in place (rename, fsync of the models dir), unless its target
 * appeared meanwhile (then a conflict: the staging folder is removed, nothing is replaced).
 */
async function place(
  ctx: Context,
  plan: ModelPlan,
  st: Staged,
  opts: SeedOptions,
): Promise<void> {
  const { item } = st;
  throwIfAborted(ctx.signal);
  // rename(2) would replace an empty folder created meanwhile: check right before it.
  if (await lstatOrNull(item.target)) {
    await removeStaging(st.staging);
    Object.assign(st.result, {
      verdict: "conflict",
      files: 0,
      bytes: 0,
      warnings: [
        ...st.result.warnings,
        conflictLine(item, "the folder appeared while it was being copied"),
      ],
    });
    return;
  }
  await Deno.rename(st.staging, item.target);
  await fsyncDir(plan.modelsDir);
  if (opts.onVerified) {
    // Copied files hold what was hashed as of the last write, which ended before this stat.
    const verified: VerifiedFile[] = [];
    for (const f of item.files) {
      const path = join(item.target, f.rel);
      const linked = st.linkedStats.get(f.rel);
      if (st.linking && !linked) continue;
      const stat = linked?.stat ?? await Deno.lstat(path);
      const verifiedAt = linked?.verifiedAt ?? ctx.now();
      verified.push({ path, rel: f.rel, stat, sha256: st.digests.get(f.rel)!, verifiedAt });
    }
    await reportVerified(opts, item.target, verified);
  }
}

/** Checks a copied file's digest against the bundle's checksums and its 0.2 manifest. */
function checkDigest(item: ModelPlanItem, f: PlannedFile, actual: string): void {
  if (f.expected !== undefined && actual !== f.expected) {
    throw digestMismatch(`model "${item.name}"`, bundleRel(item, f), actual, f.expected);
  }
  if (f.manifestSha256 !== undefined && actual !== f.manifestSha256) {
    throw new InstallError(
      "models",
      `Cannot seed model "${item.name}": sha256 of "${bundleRel(item, f)}" is ${
        short(actual)
      }, its manifest.json lists ${short(f.manifestSha256)}`,
      ExitCode.Integrity,
      "Nothing was installed for it; re-copy the model from the transfer media.",
      `sha256   ${actual}\nmanifest ${f.manifestSha256}`,
    );
  }
}

/** How a file is named in errors: its path in the bundle for 0.2 models, else in the folder. */
function bundleRel(item: ModelPlanItem, f: PlannedFile): string {
  if (item.source.kind !== "bundle-model") return f.rel;
  const i = f.src.lastIndexOf(`/${item.source.path}/`);
  return i >= 0 ? f.src.slice(i + 1) : f.src;
}

async function seedFolder(
  ctx: Context,
  plan: ModelPlan,
  item: ModelPlanItem,
  opts: SeedOptions,
  staged: Staged[],
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
      const want = f.expected ?? f.manifestSha256 ??
        (await hashFile(f.src, undefined, ctx.signal)).sha256;
      const path = join(item.target, f.rel);
      // The stat and the clock before hashing: a write during the hash shows up next time.
      const stat = await Deno.lstat(path);
      const verifiedAt = ctx.now();
      const have = await hashFile(path, advance, ctx.signal);
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
  const staging = join(
    plan.modelsDir,
    stagingName(item.target.slice(item.target.lastIndexOf("/") + 1)),
  );
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
    await Deno.mkdir(staging);
    // The gateway of Cortex 0.2 runs as uid 1000 and reads the models: folders 0755 and files
    // 0644 whatever the umask (it chowns only the models dir itself, cortex-0.2-facts §4).
    await Deno.chmod(staging, 0o755);
    const dirs = new Set<string>();
    for (const f of item.files) {
      const d = parentOf(f.rel);
      if (d !== "" && !dirs.has(d)) {
        const parts = d.split("/");
        for (let k = 1; k <= parts.length; k++) {
          const sub = parts.slice(0, k).join("/");
          if (dirs.has(sub)) continue;
          await Deno.mkdir(join(staging, sub), { recursive: true });
          await Deno.chmod(join(staging, sub), 0o755);
          dirs.add(sub);
        }
      }
    }
    // Two files at a time: SHA-256 of one stream is sequential (one core), so a second file
    // hashed at once puts the other core to work (bench/ suite, case models: eight shards).
    await inPool(item.files, FILES_AT_ONCE, async (f) => {
      const dst = join(staging, f.rel);
      let got;
      if (linking) {
        // Verify the source first (one read), then give it a second name (its mode is the
        // bundle file's: a hardlink is the same file).
        const before = await Deno.stat(f.src);
        const verifiedAt = ctx.now();
        got = await hashFile(f.src, advance, ctx.signal);
        checkDigest(item, f, got.sha256);
        await Deno.link(f.src, dst);
        // The link moved the ctime: keep the stat taken after it, if the content did not move.
        const after = await Deno.stat(dst);
        if (after.size === before.size && after.mtime?.getTime() === before.mtime?.getTime()) {
          linkedStats.set(f.rel, { stat: after, sha256: got.sha256, verifiedAt });
        }
      } else {
        got = await copyHashed(f.src, dst, { signal: ctx.signal, onBytes: advance });
        checkDigest(item, f, got.sha256);
        await Deno.chmod(dst, 0o644);
      }
      bytes += got.size;
      digests.set(f.rel, got.sha256);
    });
    for (const d of [...dirs].sort((a, b) => b.length - a.length)) {
      await fsyncDir(join(staging, d));
    }
    await fsyncDir(staging);
    throwIfAborted(ctx.signal);
  } catch (e) {
    await removeStaging(staging);
    throw asInterrupted(e, ctx.signal);
  }
  const result = res(linking ? "linked" : "copied", item.files.length, bytes, extra);
  staged.push({ item, staging, linking, digests, linkedStats, result });
  return result;
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

/** Model files copied (and hashed) at the same time. */
const FILES_AT_ONCE = 2;

/**
 * Runs `fn` over `items`, `n` at a time. On the first failure no new item starts; the running
 * ones settle (so no copy is still writing when the caller removes the staging folder), then
 * that first error is thrown.
 */
export async function inPool<T>(
  items: readonly T[],
  n: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  let failed: { e: unknown } | undefined;
  const worker = async () => {
    while (!failed && next < items.length) {
      const item = items[next++];
      try {
        await fn(item);
      } catch (e) {
        failed ??= { e };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
  if (failed) throw failed.e;
}

export function conflictLine(item: { name: string; target: string }, why?: string): string {
  return `"${item.target}" already exists with different content${
    why ? ` (${why})` : ""
  }; it was kept as is — move it away and re-run to install the bundle's version`;
}
