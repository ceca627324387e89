/**
 * Step `backup`: before an upgrade changes any image, `pg_dump` the running database into the
 * state dir (src/host/database.ts, db.ts: streamed, fsynced, checked complete, SHA-256 beside
 * it) and record it on the release being replaced: what a rollback to it restores.
 *
 * It runs right after `verify` and before `load`, the first step that changes the host, because:
 * - a failed backup then stops the upgrade with nothing changed (exit 3): no image loaded, no
 *   file written, the installed release untouched and running;
 * - the dump is of the database exactly as the installed release runs it, before anything of the
 *   new release (settings, images, the recreate of `stack`) can reach it;
 * - it is written before the image loads fill the disk.
 * The price: what the installed gateway writes between the backup and the `stack` step (the
 * load's duration) is not in the backup; only a rollback restores it, and a rollback is a return
 * to the database as it was when the upgrade began.
 *
 * When postgres is not running, the installed release's postgres is started alone for the backup
 * (and stopped again when the backup fails): a stopped stack is still upgraded with a backup.
 * The step writes only into the state dir, so it does not count as a change of the host.
 */
import {
  backupEvent,
  backupProblem,
  type DbLocation,
  locateDatabase,
  startDatabase,
  stopContainer,
  takeBackup,
} from "../host/database.ts";
import { recordDbEvent } from "../state/journal.ts";
import { preflightError } from "../errors.ts";
import type { InstallStep } from "./types.ts";

export const backupDbStep: InstallStep = {
  name: "backup",
  changesHost: false,
  when: ({ prepared }) => prepared.database.backup !== undefined,
  async run(run) {
    const { ctx, options: o, prepared: p, journal } = run;
    const plan = p.database.backup!;
    const current = run.previous!;
    if (plan.reuse) {
      const problem = await backupProblem(plan.reuse);
      if (!problem) {
        ctx.log.info(`Keeping the database backup of the interrupted run: ${plan.reuse.path}`);
        run.report.database = { ...run.report.database, backup: { ...plan.reuse, reused: true } };
        return {};
      }
      // The new gateway may have changed the database since: a fresh dump could not bring the
      // installed release back, and a rollback must not restore a damaged file.
      delete current.dbBackup;
      ctx.log.warn(
        `The backup of the interrupted run cannot be used (${problem}): taking a new one; the database may already carry changes of the new release`,
      );
    }
    let loc: DbLocation | undefined = await locateDatabase(
      ctx,
      current.stack?.project ?? o.project,
    );
    let started: string | undefined;
    if (!loc) {
      // Not running (or stopped since the plan was made): start the installed release's alone.
      if (!plan.stack) {
        throw preflightError(
          "database",
          `Cannot back up the database before the upgrade: postgres is not running and the journal does not say how Cortex ${current.release} ran it`,
          "Start it and run again, or pass --skip-db to upgrade without a backup.",
        );
      }
      loc = await startDatabase(ctx, { ...plan.stack, waitTimeoutSec: o.waitTimeoutSec });
      started = loc.container;
    }
    try {
      const b = await takeBackup(ctx, loc, {
        stateDir: o.stateDir,
        label: `before-${p.plan.bundle.release ?? "upgrade"}`,
        reason: plan.reason,
        forBundle: p.digest,
      });
      // On the release being replaced: what a rollback to it restores (replaces an older one).
      current.dbBackup = b;
      const ev = backupEvent(b, p.digest);
      recordDbEvent(journal, ev);
      run.dbEvents.push(ev);
      run.report.database = { ...run.report.database, backup: b };
      return {};
    } catch (e) {
      // The postgres we started for the backup goes back to stopped: nothing changed.
      if (started) await stopContainer(ctx, started);
      throw e;
    }
  },
};
