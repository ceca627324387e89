/**
 * Listing and comparing folders without following symlinks, shared by the models step's planning,
 * copying and archive handling: what a folder holds (relative path -> kind, size, link text), the
 * first difference between two listings, and the digest of a folder's content.
 */
import { createHash } from "node:crypto";
import { fsyncDir } from "../../fsutil.ts";
import { joinRel } from "../safepath.ts";

/**
 * The digest of a folder's content: SHA-256 over its files' `<sha256>  <relative path>\n`
 * lines (the `sha256sum` format) sorted by path.
 */
export function treeDigest(files: readonly { rel: string; sha256: string }[]): string {
  const sorted = [...files].sort((a, b) => (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0));
  return createHash("sha256").update(sorted.map((f) => `${f.sha256}  ${f.rel}\n`).join(""))
    .digest("hex");
}

export const join = (...p: string[]) => p.filter((x) => x !== "").join("/").replace(/\/{2,}/g, "/");

export async function lstatOrNull(path: string): Promise<Deno.FileInfo | null> {
  try {
    return await Deno.lstat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
}

export interface TreeEntry {
  kind: "file" | "dir" | "symlink" | "other";
  size: number;
  link?: string;
}

/** Lists a folder recursively without following symlinks: relative path -> entry. */
export async function listTree(root: string): Promise<Map<string, TreeEntry>> {
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
export function contentEntries(tree: Map<string, TreeEntry>): Map<string, TreeEntry> {
  return new Map([...tree].filter(([, e]) => e.kind !== "dir"));
}

/** First difference in file list, kinds, sizes or link texts; null when they agree. */
export function diffListing(
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

export async function fsyncTree(root: string, tree: Map<string, TreeEntry>): Promise<void> {
  const dirs = [...tree].filter(([, e]) => e.kind === "dir").map(([r]) => r);
  dirs.sort((a, b) => b.split("/").length - a.split("/").length);
  for (const d of dirs) await fsyncDir(join(root, d));
  await fsyncDir(root);
}
