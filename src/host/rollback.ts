/**
 * Rolling back to a recorded release: restore the env files and compose override as they were
 * before the release being left was written, re-tag the recorded image IDs (tags such as
 * `:latest` are reused across releases), restore the database backed up before the release being
 * left was installed, bring that stack up and wait for it to be healthy.
 * Used automatically when an upgrade does not become healthy, and by `cortex-install rollback`.
 *
 * The database, when the release returned to has a backup taken for the upgrade being undone:
 * the backup is checked (size, SHA-256) before anything changes; every service but postgres is
 * stopped (the gateway holds locks, and must not start on the wrong schema); with `backupFirst`
 * the database being replaced is backed up (the `rollback` command: nothing is lost); files and
 * tags as above; the returned-to release's postgres is started alone (recreated when its image
 * differs); the backup is restored in one transaction; then the whole stack starts. A failed
 * restore says plainly what runs and how to restore by hand (exit 6).
 */
import type { Context } from "../context.ts";
import { dockerError, ExitCode, InstallError, preflightError } from "../errors.ts";
import { type ComposeChoice, tail } from "../docker.ts";
import { writeFileAtomic } from "./atomic.ts";
import {
  type ContainerState,
  type StackOptions,
  type StackResult,
  startContainers,
  startStack,
  stopServicesExcept,
} from "./stack.ts";
import {
  type DbBackup,
  type DbEvent,
  type Journal,
  markRolledBack,
  type Release,
} from "../state/journal.ts";
import { sha256Hex } from "../hash.ts";
import { DB_SERVICE } from "../layout.ts";
import { rollbackFiles } from "./upgrade01.ts";
import {
  backupEvent,
  backupProblem,
  type DbLocation,
  locateDatabase,
  manualRestore,
  restoreDump,
  startDatabase,
  takeBackup,
} from "./database.ts";

export interface RollbackOptions {
  waitTimeoutSec: number;
  /** How to run the stack when the release returned to does not record it (older journals). */
  stack: NonNullable<Release["stack"]>;
  /** Index of the release being left (its backups hold what to restore). */
  from: number;
  /** Index of the release to return to; default: the current one (automatic rollback). */
  to?: number;
  database: {
    /** --skip-db: the database is neither backed up nor restored. */
    skip?: boolean;
    /** Back up the database being replaced first, into this state dir (`rollback`). */
    backupFirst?: { stateDir: string };
  };
}

export interface RollbackResult {
  from: string;
  to: string;
  restored: { path: string; from: string }[];
  retagged: { ref: string; imageId: string }[];
  stack: StackResult;
  database: {
    /** The backup restored (the one taken before the release left was installed). */
    restored?: DbEvent & { takenAt: string };
    /** The backup of the database replaced, taken first (`rollback`). */
    backupFirst?: DbBackup;
    /** Why the database was not restored. */
    skipped?: string;
    /** Backups taken and restores done, for the journal and the audit log. */
    events: DbEvent[];
  };
}

/**
 * The backup to restore when leaving `from` for `to`: the one `to` recorded when the upgrade to
 * `from` began (`forBundle` is `from`'s bundle). An older backup of `to` (of another upgrade)
 * would bring back an older database, so it does not count.
 */
export function backupFor(from: Release, to: Release): DbBackup | undefined {
  const b = to.dbBackup;
  return b && b.forBundle === from.bundleDigest ? b : undefined;
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

  const project = to.stack?.project ?? o.stack.project;
  // 0. The database: which backup, and is it still the file it was (before anything changes).
  const db: RollbackResult["database"] = { events: [] };
  const backup = o.database.skip ? undefined : backupFor(from, to);
  if (o.database.skip) db.skipped = "--skip-db";
  else if (!backup) {
    db.skipped = `no backup was taken before Cortex ${from.release} was installed`;
    ctx.log.warn(`The database is not restored: ${db.skipped}`);
  } else {
    const problem = await backupProblem(backup);
    if (problem) {
      throw preflightError(
        "rollback",
        `Cannot roll back to Cortex ${to.release} with its database: ${problem}; nothing was changed`,
        "Put the backup file back (its .sha256 lies beside it), or pass --skip-db to roll back images and settings only (the database then stays as Cortex " +
          `${from.release} left it).`,
      );
    }
  }
  try {
    return await rollbackSteps(ctx, journal, o, { from, to, toIdx, project, backup, db });
  } catch (e) {
    // A backup taken first stays recorded even when a later part fails.
    if (db.events.length && e instanceof Error) Object.assign(e, { dbEvents: db.events });
    throw e;
  }
}

async function rollbackSteps(
  ctx: Context,
  journal: Journal,
  o: RollbackOptions,
  x: {
    from: Release;
    to: Release;
    toIdx: number;
    project: string;
    backup?: DbBackup;
    db: RollbackResult["database"];
  },
): Promise<RollbackResult> {
  const { from, to, toIdx, project, backup, db } = x;
  let stopped: ContainerState[] = [];
  if (backup) {
    // Nothing but postgres may run: the gateway holds locks and must not see the restore.
    stopped = await stopServicesExcept(ctx, project, [DB_SERVICE]);
    if (o.database.backupFirst) {
      try {
        const loc = await locateDatabase(ctx, project);
        if (loc) {
          const b = await takeBackup(ctx, loc, {
            stateDir: o.database.backupFirst.stateDir,
            label: `before-rollback-to-${to.release}`,
            reason: `before the rollback from ${from.release} to ${to.release}`,
          });
          db.backupFirst = b;
          db.events.push(backupEvent(b));
        } else {
          ctx.log.warn("postgres is not running: the database being replaced is not backed up");
        }
      } catch (e) {
        await startContainers(ctx, stopped);
        throw e;
      }
    }
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

  // The files that release ran: the checkout's, or the copies kept in the state dir when the
  // checkout changed since (0.1 -> 0.2 in place: 0.2's compose file replaced 0.1's).
  const runFiles = await rollbackFiles(to, o.stack);
  if (runFiles.fromState) {
    ctx.log.info(
      `Running Cortex ${to.release} from its compose files kept in ${runFiles.files[0]}`,
    );
  }
  const stackOpts: StackOptions = {
    cortexDir: to.stack?.cortexDir ?? o.stack.cortexDir,
    files: runFiles.files,
    project: to.stack?.project ?? o.stack.project,
    profiles: to.stack?.profiles ?? o.stack.profiles,
    readiness: to.stack?.readiness?.length ? to.stack.readiness : o.stack.readiness,
    composeChoice: (to.stack?.compose ?? o.stack.compose ?? "auto") as ComposeChoice,
    waitTimeoutSec: o.waitTimeoutSec,
  };

  // 3. The database: that release's postgres alone, then the backup into an emptied database.
  if (backup) {
    let loc: DbLocation | undefined;
    try {
      loc = await startDatabase(ctx, stackOpts);
      const ev = await restoreDump(ctx, loc, {
        path: backup.path,
        expectSha256: backup.sha256,
        reason: `rollback from ${from.release} to ${to.release}`,
      });
      db.events.push(ev);
      db.restored = { ...ev, takenAt: backup.takenAt };
    } catch (e) {
      if (!(e instanceof InstallError)) throw e;
      throw new InstallError(
        "rollback",
        `Cannot restore the database of Cortex ${to.release} from ${backup.path}: ${e.message}`,
        ExitCode.Stack,
        `The host now: Cortex ${to.release}'s images and settings are in place; ${
          loc
            ? `postgres runs (container ${
              loc.container.slice(0, 12)
            }) with the database as it was before this restore (Cortex ${from.release}'s: the restore is one transaction)`
            : "postgres did not start"
        }; the gateway and the other services are stopped. Fix the cause and run \`cortex-install rollback\` again, or restore by hand.`,
        [e.detail, manualRestore(loc, backup.path)].filter(Boolean).join("\n"),
      );
    }
  }

  // 4. The stack, as that release ran it.
  const stack = await startStack(ctx, stackOpts);

  markRolledBack(journal, o.from, toIdx);
  return { from: from.release, to: to.release, restored, retagged, stack, database: db };
}
