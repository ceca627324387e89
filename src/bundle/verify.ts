/**
 * The `verify` step: every listed file of the bundle is hashed (a few at a time) and compared
 * with its pin or checksums line. Fail closed: a missing listed file, a mismatch, an unlisted
 * image tar, or a bundle with no checksums and no pins are errors. Changes nothing on disk.
 */
import type { Context } from "../context.ts";
import { integrityError, printable } from "../errors.ts";
import { hashFiles, type HashResult, shortDigest } from "../hash.ts";
import type { Bundle, BundleFile, ExpectedSource } from "./types.ts";
import { CHECKSUMS_FILE } from "../layout.ts";

/**
 * `conflict`: two lists disagree on its digest (0.2: images.json vs checksums.sha256, a model
 * manifest vs checksums.sha256); `unsafe`: a model path or link the bundle may not install.
 */
export type FileVerdict =
  | "ok"
  | "mismatch"
  | "missing"
  /** Present but cannot be read (permissions, I/O error). */
  | "unreadable"
  | "unlisted"
  | "skipped"
  | "conflict"
  | "unsafe";

export interface VerifiedFile {
  path: string;
  /** Size on disk (bytes), absent when the file is missing. */
  size?: number;
  /** The digest the bundle lists (pin or checksums), if any. */
  expected?: string;
  /** The digest read from disk, when it was hashed. */
  actual?: string;
  source?: ExpectedSource;
  verdict: FileVerdict;
}

export interface VerifyReport {
  ok: boolean;
  files: VerifiedFile[];
  /** One line per failure: the file, both digests and what to do. */
  errors: string[];
  /** Non-fatal remarks (unlisted files allowed by --allow-unlisted, --no-verify). */
  warnings: string[];
  /**
   * Files no checksum covers by design (0.2: bundle.json, model manifests, versions.env,
   * wheels/): not verified, and trusted for nothing. Absent for 0.1 packages.
   */
  uncovered?: string[];
}

export interface VerifyOptions {
  /** Unlisted files become warnings instead of errors. */
  allowUnlisted?: boolean;
  /** Skip hashing entirely (every verdict "skipped"; a loud warning). */
  noVerify?: boolean;
  /** Leave image tars out: `load` hashes them while loading (single pass). */
  skipImages?: boolean;
  /** Files hashed at the same time (default 3). */
  concurrency?: number;
}

export const RECOPY_HINT = "Re-copy the file from the transfer media, then run again.";

/** Who lists a digest, for messages: "checksums.sha256", "the release pins", "images.json". */
export function listerName(source: ExpectedSource | undefined): string {
  return source === "pin"
    ? "the release pins"
    : source === "images.json"
    ? "images.json"
    : CHECKSUMS_FILE;
}

/** What one listed file's hash (or absence) means, with the message for a failure. Pure. */
export function judgeFile(
  f: Pick<BundleFile, "path" | "size" | "expected" | "manifestSha256">,
  hashed: HashResult | Error | undefined,
): { entry: VerifiedFile; error?: string } {
  const base: VerifiedFile = {
    path: f.path,
    size: f.size,
    expected: f.expected?.sha256,
    source: f.expected?.source,
    verdict: "ok",
  };
  const lister = listerName(f.expected?.source);
  if (f.size === undefined || isNotFound(hashed)) {
    return {
      entry: { ...base, size: undefined, verdict: "missing" },
      error: `Cannot verify "${printable(f.path)}": the file is missing, ${lister} lists ${
        shortDigest(f.expected?.sha256)
      }; copy it from the transfer media`,
    };
  }
  if (hashed instanceof Error) {
    return {
      entry: { ...base, verdict: "unreadable" },
      error: `Cannot verify "${printable(f.path)}": the file is unreadable: ${
        printable(hashed.message)
      }; check its permissions or re-copy it`,
    };
  }
  const actual = hashed?.sha256;
  if (f.expected && actual !== f.expected.sha256) {
    return {
      entry: { ...base, actual, size: hashed?.size ?? f.size, verdict: "mismatch" },
      error: `Cannot verify "${printable(f.path)}": sha256 is ${
        shortDigest(actual)
      }, ${lister} lists ${
        shortDigest(f.expected.sha256)
      }; re-copy the file from the transfer media`,
    };
  }
  // A 0.2 model manifest's digest never makes a file trusted, but a file that disagrees with it
  // is damaged all the same.
  if (f.manifestSha256 && actual !== undefined && actual !== f.manifestSha256) {
    return {
      entry: { ...base, actual, size: hashed?.size ?? f.size, verdict: "mismatch" },
      error: `Cannot verify "${printable(f.path)}": sha256 is ${
        shortDigest(actual)
      }, its model manifest.json lists ${
        shortDigest(f.manifestSha256)
      }; re-copy the file from the transfer media`,
    };
  }
  if (!f.expected) return { entry: { ...base, actual, verdict: "unlisted" } };
  return { entry: { ...base, actual, size: hashed?.size ?? f.size } };
}

function isNotFound(r: HashResult | Error | undefined): boolean {
  return r instanceof Deno.errors.NotFound;
}

/** The message for a file no checksum or pin covers. Pure. */
export function unlistedMessage(path: string, allowed: boolean): string {
  return allowed
    ? `"${path}" is not listed in ${CHECKSUMS_FILE} or the release pins; using it unverified (--allow-unlisted)`
    : `Cannot verify "${path}": no checksum or pin covers it; add it to ${CHECKSUMS_FILE} on the source host, or pass --allow-unlisted to use it unverified`;
}

/**
 * Verifies the bundle's files against their pins and checksums. Hashes every listed file in
 * parallel with byte progress through `ctx.progress`. Returns a report; `ok` is false when any
 * error was found (the CLI maps it to exit 4 with `assertVerified`). Never writes.
 */
export async function verifyBundle(
  ctx: Context,
  bundle: Bundle,
  opts: VerifyOptions = {},
): Promise<VerifyReport> {
  const errors: string[] = [];
  const warnings: string[] = [];
  const inScope = (kind: BundleFile["kind"]) => !(opts.skipImages && kind === "image");
  const files = bundle.files.filter((f) => inScope(f.kind));
  const known = new Set(bundle.files.map((f) => f.path));
  // Unlisted files the reader found that are not in `files` (e.g. model files).
  const extraUnlisted = bundle.unlisted.filter((p) => !known.has(p));
  const missingOnly = bundle.missing.filter((p) => !known.has(p));

  if (opts.noVerify) {
    const w =
      `Integrity checks are OFF (--no-verify): ${files.length} file(s) of "${bundle.dir}" are used without checking their sha256`;
    ctx.log.warn(w);
    warnings.push(w);
    return {
      ok: true,
      files: [
        ...files.map((f) => ({
          path: f.path,
          size: f.size,
          expected: f.expected?.sha256,
          source: f.expected?.source,
          verdict: "skipped" as const,
        })),
        ...extraUnlisted.map((p) => ({ path: p, verdict: "skipped" as const })),
      ],
      errors,
      warnings,
    };
  }

  const anyPin = bundle.files.some((f) => f.expected?.source === "pin");
  if (!bundle.hasChecksums && !anyPin) {
    errors.push(
      `Cannot verify "${bundle.dir}": it has no ${CHECKSUMS_FILE} and the release manifest pins none of its files`,
    );
  }

  const toHash = files.filter((f) => (f.expected || f.manifestSha256) && f.size !== undefined);
  ctx.progress.addTotal(toHash.reduce((s, f) => s + (f.size ?? 0), 0));
  ctx.progress.label(`verify ${toHash.length} file(s)`);
  const byAbs = new Map(toHash.map((f) => [f.abs, f]));
  const hashed = await hashFiles(toHash.map((f) => f.abs), {
    concurrency: opts.concurrency,
    signal: ctx.signal,
    onBytes: (n) => ctx.progress.advance(n),
    onDone: (abs) => ctx.progress.label(`verified ${byAbs.get(abs)?.path ?? abs}`),
  });

  const entries: VerifiedFile[] = [];
  for (const f of files) {
    const { entry, error } = judgeFile(f, hashed.get(f.abs));
    if (entry.verdict === "unlisted") {
      const msg = unlistedMessage(f.path, !!opts.allowUnlisted);
      if (opts.allowUnlisted) warnings.push(msg);
      else errors.push(msg);
    }
    if (error) errors.push(error);
    entries.push(entry);
  }
  for (const p of extraUnlisted) {
    const msg = unlistedMessage(p, !!opts.allowUnlisted);
    if (opts.allowUnlisted) warnings.push(msg);
    else errors.push(msg);
    entries.push({ path: p, verdict: "unlisted" });
  }
  for (const p of missingOnly) {
    errors.push(
      `Cannot verify "${
        printable(p)
      }": ${CHECKSUMS_FILE} lists it but the file is missing; copy it from the transfer media`,
    );
    entries.push({ path: p, verdict: "missing" });
  }
  // Integrity problems found while reading (0.2): each fails the bundle, once per file.
  const byPath = new Map(entries.map((e) => [e.path, e]));
  for (const p of bundle.problems ?? []) {
    const e = byPath.get(p.path);
    if (e && (e.verdict === "mismatch" || e.verdict === "missing") && p.verdict === e.verdict) {
      continue; // hashing found the same thing and said so
    }
    errors.push(p.message);
    if (e) {
      if (e.verdict === "ok" || e.verdict === "unlisted") e.verdict = p.verdict;
    } else {
      const n: VerifiedFile = { path: p.path, verdict: p.verdict };
      entries.push(n);
      byPath.set(p.path, n);
    }
  }
  for (const w of warnings) ctx.log.warn(w);
  entries.sort((a, b) => a.path < b.path ? -1 : a.path > b.path ? 1 : 0);
  return {
    ok: errors.length === 0,
    files: entries,
    errors,
    warnings,
    ...(bundle.uncovered ? { uncovered: bundle.uncovered } : {}),
  };
}

/**
 * Throws an integrity error (exit 4) summarizing a failed report; returns when `report.ok`.
 * The message counts the failures, the detail lists each one.
 */
export function assertVerified(report: VerifyReport): void {
  if (report.ok) return;
  const bad = report.files.filter((f) =>
    f.verdict === "mismatch" || f.verdict === "missing" || f.verdict === "unreadable" ||
    f.verdict === "conflict" ||
    f.verdict === "unsafe" ||
    (f.verdict === "unlisted" && report.errors.some((e) => e.includes(`"${printable(f.path)}"`)))
  );
  const names = bad.slice(0, 5).map((f) => `"${printable(f.path)}" (${f.verdict})`).join(", ");
  const more = bad.length > 5 ? ` and ${bad.length - 5} more` : "";
  const summary = bad.length > 0
    ? `Cannot verify the bundle: ${bad.length} of ${report.files.length} file(s) failed: ${names}${more}`
    : `Cannot verify the bundle: ${report.errors[0]}`;
  throw integrityError(summary, RECOPY_HINT, report.errors.join("\n"));
}
