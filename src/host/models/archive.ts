/**
 * Safe extraction of the Admin-UI archives (`models.tar.gz`, `model-<id>-files.tar.gz`,
 * `hf-cache.tar.gz`): streamed into a staging folder, every entry checked before anything of it
 * is written (no path outside the root, no link leading out, no device), the archive's digest
 * checked at the end; then each complete model folder is renamed into place (the HF cache is
 * merged, see hfcache.ts). A refused archive leaves nothing but its staging folder, removed.
 */
import { Readable } from "node:stream";
import type { ReadableStream as NodeReadableStream } from "node:stream/web";
import { createHash } from "node:crypto";
// @deno-types="npm:@types/tar-stream@3.1.5"
import tar from "tar-stream";
import type { Context } from "../../context.ts";
import type { ModelSource } from "../../bundle/types.ts";
import {
  asInterrupted,
  ExitCode,
  InstallError,
  InterruptedError,
  throwIfAborted,
} from "../../errors.ts";
import { hashFile, shortDigest as short } from "../../hash.ts";
import { writeStreamHashed } from "../../copy.ts";
import { fsyncDir } from "../../fsutil.ts";
import {
  hasSymlinkAncestor,
  joinRel,
  normalizeEntryPath,
  parentOf,
  resolveInRoot,
  stripRoot,
  symlinkStaysInside,
} from "../safepath.ts";
import { checkCompleteness, type ModelPlan, type ModelPlanItem, validFolderName } from "./plan.ts";
import { conflictLine, digestMismatch, type ModelResult, type ModelVerdict } from "./copy.ts";
import {
  contentEntries,
  diffListing,
  fsyncTree,
  join,
  listTree,
  lstatOrNull,
  type TreeEntry,
} from "./tree.ts";
import { removeStaging, stagingName } from "./staging.ts";
import { mergeHfCache } from "./hfcache.ts";

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

export interface Staged {
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

export async function seedArchive(
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
    throw asInterrupted(e, ctx.signal);
  }
}

/** Counts, hashes and checks abort on the compressed bytes as they are read. */
function hashingTap(
  ctx: Context,
  hash: ReturnType<typeof createHash>,
): TransformStream<Uint8Array, Uint8Array> {
  return new TransformStream({
    transform(chunk, ctl) {
      throwIfAborted(ctx.signal);
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
      // Only files carry data: tar-stream never ends the data of a directory (or link) entry
      // whose size field is not 0, so draining it would wait forever.
      if (h.type !== "file" && h.type !== "contiguous-file" && (h.size ?? 0) > 0) {
        throw refuse(
          h.name,
          `is a ${h.type ?? "unknown"} entry that carries ${h.size} bytes of data`,
        );
      }
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
          staged.files.set(rel, { size: got.size, sha256: got.sha256 });
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
          if (tRel !== null && staged.files.has(tRel) && unitOf(tRel) !== unitOf(rel)) {
            throw refuse(h.name, `is a hard link to "${h.linkname}", outside its model folder`);
          }
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
    throwIfAborted(ctx.signal);
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
    for (const [rel, target] of staged.links) {
      const to = resolveInRoot(rel, staged.links);
      if (to === null) {
        throw refuse(rel, "is a symbolic link that leads outside the archive");
      }
      // Each top folder is installed on its own (a model, or an HF cache repo): a link into a
      // sibling or to the archive's root would point at another model once installed.
      if (unitOf(to) !== unitOf(rel)) {
        throw refuse(rel, `is a symbolic link to "${target}", outside its model folder`);
      }
    }
  }
  const digest = hash.digest("hex");
  if (item.expected !== undefined && digest !== item.expected) {
    throw digestMismatch(`"${archive}"`, archive, digest, item.expected);
  }
  return staged;
}

/** The top folder of a staged path: the unit (model folder, HF cache repo) it is installed with. */
function unitOf(rel: string): string {
  return rel.split("/")[0];
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
      const have = await hashFile(join(target, r), (n) => ctx.progress.advance(n), ctx.signal);
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
