/**
 * Rolling back to a recorded release: restore the env files and compose override as they were
 * before the release being left was written, re-tag the recorded image IDs (tags such as
 * `:latest` are reused across releases), bring that stack up and wait for it to be healthy.
 * Used automatically when an upgrade does not become healthy, and by `cortex-install rollback`.
 */
import type { Context } from "../context.ts";
import { dockerError, preflightError } from "../errors.ts";
import { tail } from "../docker.ts";
import { writeFileAtomic } from "./atomic.ts";
import { type StackResult, startStack } from "./stack.ts";
import { type Journal, markRolledBack, type Release } from "../state/journal.ts";
import { sha256Hex } from "../hash.ts";

export interface RollbackOptions {
  waitTimeoutSec: number;
  /** How to run the stack when the release returned to does not record it (older journals). */
  stack: NonNullable<Release["stack"]>;
  /** Index of the release being left (its backups hold what to restore). */
  from: number;
  /** Index of the release to return to; default: the current one (automatic rollback). */
  to?: number;
}

export interface RollbackResult {
  from: string;
  to: string;
  restored: { path: string; from: string }[];
  retagged: { ref: string; imageId: string }[];
  stack: StackResult;
}

/**
 * Restores release `to` (see the module comment) and records it in the journal object; the
 * caller writes the journal.
 */
export async function rollbackTo(
  ctx: Context,
  journal: Journal,
  o: RollbackOptions,
): Promise<RollbackResult> {
  const toIdx = o.to ?? journal.current;
  const from = journal.releases[o.from];
  const to = toIdx === undefined ? undefined : journal.releases[toIdx];
  if (!from || !to || toIdx === undefined) {
    throw preflightError(
      "rollback",
      "Cannot roll back: no previous release is recorded",
      undefined,
    );
  }

  // 1. Files: each file the left release wrote goes back to the content it replaced.
  const restored: RollbackResult["restored"] = [];
  for (const [path, f] of Object.entries(from.envFiles)) {
    const want = to.envFiles[path]?.sha256;
    let cur: Uint8Array | undefined;
    try {
      cur = await Deno.readFile(path);
    } catch { /* absent */ }
    if (cur && want && sha256Hex(cur) === want) continue;
    if (!f.backup) continue; // the release did not change it: nothing to restore
    const old = await Deno.readFile(f.backup);
    const mode = path.endsWith(".yaml") || path.endsWith(".yml") ? 0o644 : 0o600;
    // The content being replaced is itself kept as a backup: nothing is lost.
    await writeFileAtomic(path, old, { mode, backup: true, now: ctx.now() });
    restored.push({ path, from: f.backup });
  }

  // 2. Images: re-tag every recorded ref to the image ID it had.
  const retagged: RollbackResult["retagged"] = [];
  for (const [ref, id] of Object.entries(to.images)) {
    const r = await ctx.docker.run(["tag", id, ref]);
    if (r.code !== 0) {
      throw dockerError(
        "rollback",
        `Cannot restore "${ref}" to image ${id.slice(0, 19)}: ${tail(r.stderr, 1)}`,
        "The previous release's image was removed from the engine; load its bundle again.",
      );
    }
    retagged.push({ ref, imageId: id });
  }

  // 3. The stack, as that release ran it.
  const stack = await startStack(ctx, {
    cortexDir: to.stack?.cortexDir ?? o.stack.cortexDir,
    files: [
      to.stack?.composeFile ?? o.stack.composeFile,
      ...(to.override ? [to.override] : []),
    ],
    project: to.stack?.project ?? o.stack.project,
    profiles: to.stack?.profiles ?? o.stack.profiles,
    readiness: to.stack?.readiness?.length ? to.stack.readiness : o.stack.readiness,
    composeChoice: to.stack?.compose ?? o.stack.compose ?? "auto",
    waitTimeoutSec: o.waitTimeoutSec,
  });

  markRolledBack(journal, o.from, toIdx);
  return { from: from.release, to: to.release, restored, retagged, stack };
}
