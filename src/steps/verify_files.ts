/**
 * Step `verify`: the bundle files that neither the load nor the models step hashes as it reads
 * them (db dump, manifests, a listed tar the manifest does not name) are verified before the
 * first write; a listed file that is missing fails the run here, before anything is loaded. A
 * file hashed by an earlier run and unchanged since (size, mtime, inode, ctime) is trusted.
 */
import { assertVerified, verifyBundle, type VerifyReport } from "../bundle/verify.ts";
import { markVerified, verifiedSha256 } from "../state/journal.ts";
import type { InstallStep } from "./types.ts";

export const verifyFilesStep: InstallStep = {
  name: "verify",
  changesHost: false,
  async run({ ctx, options: o, prepared: p, journal, verdicts }) {
    const imageFiles = new Set(p.bundle.images.map((i) => i.file));
    const others = p.bundle.files.filter((f) =>
      !imageFiles.has(f.path) && f.kind !== "model" && f.kind !== "archive"
    );
    const missing = p.bundle.missing.filter((m) => !imageFiles.has(m));
    const toHash: typeof others = [];
    const stats = new Map<string, Deno.FileInfo>();
    for (const f of others) {
      const st = await Deno.stat(f.abs).catch(() => undefined);
      if (st) stats.set(f.abs, st);
      if (st && f.expected && verifiedSha256(journal, f.abs, st) === f.expected.sha256) {
        verdicts.push({ path: f.path, verdict: "cached", sha256: f.expected.sha256 });
      } else {
        toHash.push(f);
      }
    }
    let files: VerifyReport["files"] = [];
    if ((toHash.length > 0 || missing.length > 0) && !o.noVerify) {
      const hashedAt = ctx.now();
      const v = await verifyBundle(
        ctx,
        { ...p.bundle, files: toHash, images: [], unlisted: [], missing },
        { allowUnlisted: o.allowUnlisted },
      );
      files = v.files;
      for (const f of v.files) {
        verdicts.push({ path: f.path, verdict: f.verdict, sha256: f.actual });
        const abs = toHash.find((x) => x.path === f.path)?.abs;
        const st = abs ? stats.get(abs) : undefined;
        if (abs && st && f.verdict === "ok" && f.actual) {
          markVerified(journal, abs, st, f.actual, hashedAt);
        }
      }
      assertVerified(v);
    }
    return { report: { files } };
  },
};
