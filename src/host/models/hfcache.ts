/** Merging an extracted Hugging Face cache into the installed one without replacing anything. */
import type { Context } from "../../context.ts";
import { throwIfAborted } from "../../errors.ts";
import { hashFile, shortDigest as short } from "../../hash.ts";
import { fsyncDir } from "../../fsutil.ts";
import { joinRel, parentOf } from "../safepath.ts";
import type { ModelResult } from "./copy.ts";
import type { Staged } from "./archive.ts";
import { join, listTree, lstatOrNull } from "./tree.ts";

/**
 * Merges a staged HF cache into the real one without replacing anything: a folder that does not
 * exist yet (a new `hub/models--org--name`, a new snapshot) is renamed in whole; inside existing
 * folders each new file or link is renamed into place, identical ones are skipped and different
 * ones reported. Results are grouped per repo folder (`hub/models--org--name`).
 */
export async function mergeHfCache(
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
        const have = await hashFile(to, (n) => ctx.progress.advance(n), ctx.signal);
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
