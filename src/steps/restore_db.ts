/**
 * Step `database`: restore the bundle's database dump (an Admin-UI export's `db/cortex.sql`, or a
 * 0.2 bundle's when `contents.db_dump`) on a fresh install, after postgres is healthy and before
 * the gateway's first start, so that the gateway starts on it (and migrates it, where its release
 * does). Runs after `settings` (postgres starts with the new settings and images) and before
 * `stack` (which then starts everything else).
 *
 * Nothing but postgres runs during the restore: a running gateway (with --restore-db on an
 * installed host) is stopped first, and started again if the restore fails. A database that
 * already holds data is never overwritten without --restore-db, and then it is backed up first.
 * The restore is one transaction (db.ts): a failure leaves the database as it was.
 */
import { overridePath } from "../layout.ts";
import { preflightError } from "../errors.ts";
import { inspectDatabase } from "../host/db.ts";
import {
  backupEvent,
  type DbLocation,
  restoreDump,
  startDatabase,
  takeBackup,
} from "../host/database.ts";
import { startContainers, stopServicesExcept } from "../host/stack.ts";
import { DB_SERVICE } from "../layout.ts";
import { recordDbEvent } from "../state/journal.ts";
import type { InstallStep } from "./types.ts";

export const restoreDbStep: InstallStep = {
  name: "database",
  changesHost: true,
  when: ({ prepared }) => prepared.database.restore !== undefined,
  async run(run) {
    const { ctx, options: o, prepared: p, journal } = run;
    const r = p.database.restore!;
    const stopped = await stopServicesExcept(ctx, o.project, [DB_SERVICE]);
    let loc: DbLocation | undefined;
    try {
      loc = await startDatabase(ctx, {
        cortexDir: o.cortexDir,
        files: [o.composeFile, overridePath(o.composeFile)],
        project: o.project,
        profiles: p.profiles,
        waitTimeoutSec: o.waitTimeoutSec,
      });
      const info = await inspectDatabase(ctx.docker, loc.target, ctx.signal);
      if (!r.replace && r.sha256 && info.restoredSha256 === r.sha256) {
        // An earlier run restored it and was stopped before it could record so.
        ctx.log.info(`The database already holds ${r.file} (restored by an earlier run)`);
        run.report.database = { ...run.report.database, alreadyRestored: true };
        return {};
      }
      if (info.holdsData && !r.replace) {
        throw preflightError(
          "database",
          `Cannot restore ${r.file}: the database "${loc.target.database}" already holds data (${
            info.nonEmptyTables.slice(0, 5).join(", ")
          }); it was not changed`,
          "Pass --restore-db to replace it with the bundle's (it is backed up first), or --skip-db to keep it and install without the bundle's database; then run the same command again.",
        );
      }
      if (info.holdsData) {
        const b = await takeBackup(ctx, loc, {
          stateDir: o.stateDir,
          label: "before-restore-db",
          reason: `before --restore-db replaced it with ${r.file}`,
        });
        const ev = backupEvent(b, p.digest);
        recordDbEvent(journal, ev);
        run.dbEvents.push(ev);
        run.report.database = { ...run.report.database, backupBeforeRestore: b };
      }
      const ev = await restoreDump(ctx, loc, {
        path: r.path,
        expectSha256: r.sha256,
        reason: `${r.file} of the bundle`,
        bundleDigest: p.digest,
      });
      recordDbEvent(journal, ev);
      run.dbEvents.push(ev);
      run.report.database = { ...run.report.database, restored: ev };
      return {};
    } catch (e) {
      // The database is as it was (one transaction): so is what ran beside it.
      const failed = await startContainers(ctx, stopped);
      if (stopped.length) {
        ctx.log.warn(
          failed.length
            ? `Could not start ${failed.join(", ")} again: start them with docker start`
            : `Started ${stopped.map((c) => c.name).join(", ")} again`,
        );
      }
      throw e;
    }
  },
};
