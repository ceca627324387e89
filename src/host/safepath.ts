/**
 * Pure checks for archive entry paths and link targets. Nothing here touches the disk: the
 * extractor keeps a map of the symlinks it created and asks these functions whether a path,
 * resolved through those links, stays inside the extraction root.
 */

export type PathCheck = { ok: true; path: string } | { ok: false; reason: string };

/**
 * Normalizes a tar entry name to a relative path with forward slashes ("./a//b/" -> "a/b").
 * Refuses absolute paths, `..` segments, NUL bytes, backslashes-as-separators tricks on Windows
 * drive letters, and the empty path. The root itself ("./") normalizes to "".
 */
export function normalizeEntryPath(name: string): PathCheck {
  if (name.includes("\0")) return { ok: false, reason: "contains a NUL byte" };
  if (name.startsWith("/")) return { ok: false, reason: "is an absolute path" };
  if (/^[A-Za-z]:[\\/]/.test(name)) return { ok: false, reason: "is an absolute path" };
  const parts: string[] = [];
  for (const seg of name.split("/")) {
    if (seg === "" || seg === ".") continue;
    if (seg === "..") return { ok: false, reason: 'contains a ".." segment' };
    parts.push(seg);
  }
  return { ok: true, path: parts.join("/") };
}

/** Parent of a relative path ("a/b/c" -> "a/b", "a" -> ""). */
export function parentOf(rel: string): string {
  const i = rel.lastIndexOf("/");
  return i < 0 ? "" : rel.slice(0, i);
}

/** Joins relative path parts, ignoring empty ones. */
export function joinRel(...parts: string[]): string {
  return parts.filter((p) => p !== "").join("/");
}

/**
 * Resolves `rel` (relative to the root, may contain `..` and `.`) through the symlinks in
 * `links` (relative path -> link text, as stored in the archive), component by component,
 * the way the kernel would inside the extraction root. Returns the resolved relative path, or
 * null when any step leaves the root (a `..` above it, an absolute link target, or a loop).
 */
export function resolveInRoot(rel: string, links: ReadonlyMap<string, string>): string | null {
  const stack: string[] = [];
  const todo = rel.split("/").reverse();
  let hops = 0;
  while (todo.length > 0) {
    const seg = todo.pop()!;
    if (seg === "" || seg === ".") continue;
    if (seg === "..") {
      if (stack.length === 0) return null;
      stack.pop();
      continue;
    }
    stack.push(seg);
    const target = links.get(stack.join("/"));
    if (target === undefined) continue;
    if (++hops > 40) return null;
    if (target.startsWith("/")) return null;
    stack.pop();
    // Replace this component with the link's text, resolved from the link's own folder.
    const segs = target.split("/");
    for (let k = segs.length - 1; k >= 0; k--) todo.push(segs[k]);
  }
  return stack.join("/");
}

/**
 * Whether a symlink stored at `entry` with text `linkname` points inside the root once resolved
 * through the other links. Absolute targets are refused even if they would name a path inside,
 * because they refer to the host, not to the archive.
 */
export function symlinkStaysInside(
  entry: string,
  linkname: string,
  links: ReadonlyMap<string, string>,
): boolean {
  if (linkname === "" || linkname.includes("\0") || linkname.startsWith("/")) return false;
  return resolveInRoot(joinRel(parentOf(entry), linkname), links) !== null;
}

/** Whether any proper ancestor folder of `rel` is one of the symlinks (writing would follow it). */
export function hasSymlinkAncestor(rel: string, links: ReadonlyMap<string, string>): boolean {
  const parts = rel.split("/");
  for (let i = 1; i < parts.length; i++) {
    if (links.has(parts.slice(0, i).join("/"))) return true;
  }
  return false;
}

/** Strips a root folder ("models") from a normalized path; null when the path is outside it. */
export function stripRoot(rel: string, root: string): string | null {
  if (root === "") return rel;
  if (rel === root) return "";
  return rel.startsWith(root + "/") ? rel.slice(root.length + 1) : null;
}
