/**
 * Parsing of `checksums.sha256` (the `sha256sum` format Cortex writes). Pure: text in, map out.
 */
import { preflightError } from "../errors.ts";

// `<64 hex><space><space or *><path>`; a leading backslash marks an escaped path (GNU sha256sum).
const LINE_RE = /^(\\?)([0-9a-fA-F]{64}) [ *](.+)$/;

/**
 * Normalizes a bundle-relative path: forward slashes, no `./` or empty segments.
 * Returns an error text instead of a path when the path is absolute or climbs out with `..`.
 */
export function normalizeBundlePath(raw: string): { path: string } | { error: string } {
  if (raw.startsWith("/") || /^[A-Za-z]:[\\/]/.test(raw)) {
    return { error: `absolute path "${raw}"` };
  }
  const parts: string[] = [];
  for (const seg of raw.split("/")) {
    if (seg === "" || seg === ".") continue;
    if (seg === "..") return { error: `path "${raw}" has a ".." segment` };
    parts.push(seg);
  }
  if (parts.length === 0) return { error: `empty path "${raw}"` };
  return { path: parts.join("/") };
}

function unescapePath(p: string): string {
  return p.replace(/\\(.)/g, (_m, c: string) => (c === "n" ? "\n" : c === "r" ? "\r" : c));
}

/**
 * Parses the text of a `checksums.sha256` file into a map of bundle-relative path to lower-case
 * hex digest. Accepts `<hex>  <path>` and `<hex> *<path>` (binary mode), paths with spaces, CRLF,
 * blank lines, a leading `./`, upper-case hex and GNU's backslash-escaped names. Throws a
 * preflight error naming `fileName` and the 1-based line for malformed lines, absolute paths,
 * `..` segments and a path listed twice with different digests.
 */
export function parseChecksums(text: string, fileName: string): Map<string, string> {
  const out = new Map<string, string>();
  const lines = text.split("\n");
  const hint = `Re-copy "${fileName}" from the transfer media, or regenerate it with ` +
    "`sha256sum` in the bundle folder.";
  const fail = (n: number, what: string) =>
    preflightError("bundle", `Cannot read checksums "${fileName}": line ${n}: ${what}`, hint);
  for (let i = 0; i < lines.length; i++) {
    const n = i + 1;
    let line = lines[i];
    if (line.endsWith("\r")) line = line.slice(0, -1);
    if (line.trim() === "") continue;
    if (i === 0 && line.charCodeAt(0) === 0xfeff) line = line.slice(1);
    const m = LINE_RE.exec(line);
    if (!m) {
      const shown = line.length > 80 ? `${line.slice(0, 80)}…` : line;
      throw fail(n, `expected "<64 hex digits>  <path>", found "${shown}"`);
    }
    const digest = m[2].toLowerCase();
    const rawPath = m[1] ? unescapePath(m[3]) : m[3];
    const norm = normalizeBundlePath(rawPath);
    if ("error" in norm) throw fail(n, `${norm.error}; paths must be relative to the bundle`);
    const prev = out.get(norm.path);
    if (prev !== undefined && prev !== digest) {
      throw fail(
        n,
        `"${norm.path}" is listed again with sha256 ${digest.slice(0, 12)}…, ` +
          `an earlier line lists ${prev.slice(0, 12)}…`,
      );
    }
    out.set(norm.path, digest);
  }
  return out;
}
