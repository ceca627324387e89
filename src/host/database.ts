/**
 * Cortex's database as part of a release, on the compose stack: find the running postgres of a
 * project (its settings from the container), start it alone, take a backup into the state dir,
 * check a recorded backup is still the file it was, restore a dump, keep the last N backups, and
 * plan all of it for `install` (what will be backed up or restored, and why not).
 *
 * The SQL side (pg_dump, the one-transaction restore, the dump filter) is src/host/db.ts; this
 * module only decides and wires: which container, which files, which journal records.
 */
import type { Context } from "../context.ts";
import { rollbackFiles } from "./upgrade01.ts";
import { InstallError, integrityError, preflightError, throwIfAborted } from "../errors.ts";
import { sha256OfFile } from "../hash.ts";
import { formatBytes } from "../progress.ts";
import { DB_BACKUPS_DIR, DB_SERVICE } from "../layout.ts";
import type { Bundle } from "../bundle/types.ts";
import {
  type DbBackup,
  type DbEvent,
  type Journal,
  type Release,
  restoreOf,
} from "../state/journal.ts";
import {
  backupDatabase,
  type DatabaseInfo,
  findServiceContainer,
  inspectDatabase,
  pgIsReady,
  type PgTarget,
  pgTargetFromContainer,
  pruneBackups,
  restoreDatabase,
} from "./db.ts";
import { tailShowsComplete } from "./sqldump.ts";
import { type StackOptions, startServices } from "./stack.ts";

/** The backup dir of a state dir. */
export function backupsDir(stateDir: string): string {
  return `${stateDir.replace(/\/+$/, "")}/${DB_BACKUPS_DIR}`;
}

/** A running, ready postgres container and who to connect as. */
export interface DbLocation {
  /** Container ID. */
  container: string;
  target: PgTarget;
}

/**
 * The project's running postgres container (compose labels) when it accepts connections, with the
 * settings it was created with (POSTGRES_USER/DB from its environment); undefined when none runs
 * or it is not ready.
 */
export async function locateDatabase(
  ctx: Context,
  project: string,
): Promise<DbLocation | undefined> {
  const container = await findServiceContainer(ctx.docker, project, DB_SERVICE, ctx.signal);
  if (!container) return undefined;
  const target = await pgTargetFromContainer(ctx.docker, container, ctx.signal);
  if (!(await pgIsReady(ctx.docker, target, ctx.signal))) return undefined;
  return { container, target };
}

/**
 * Starts the database service alone with these compose files (`up -d --no-deps postgres`: created,
 * or recreated when its image or settings changed; nothing else starts) and waits until it is
 * healthy and accepts connections. Returns where it is.
 */
export async function startDatabase(ctx: Context, stack: StackOptions): Promise<DbLocation> {
  await startServices(ctx, stack, [DB_SERVICE]);
  const project = stack.project!;
  // A healthcheck may test another user or none at all: wait for pg_isready ourselves too.
  for (let i = 0; i < 120; i++) {
    throwIfAborted(ctx.signal);
    const loc = await locateDatabase(ctx, project);
    if (loc) return loc;
    await ctx.sleep(500, ctx.signal);
  }
  throw new InstallError(
    "database",
    `Cannot reach the database: the "${DB_SERVICE}" service of "${project}" runs but pg_isready never answered`,
    6,
    `Look at \`docker logs\` of its container.`,
  );
}

/** Stops a container we started (`docker stop`), after a failure; never throws. */
export async function stopContainer(ctx: Context, container: string): Promise<void> {
  await ctx.docker.run(["stop", container], { signal: null }).catch(() => undefined);
}

/** What a backup or restore did, for the report. */
export interface DbDone {
  path: string;
  bytes: number;
  sha256: string;
  durationMs: number;
  reason: string;
}

/**
 * Takes a backup of the database at `loc` into `<stateDir>/db-backups` (see backupDatabase:
 * streamed, fsynced, checked complete, `.sha256` beside it), with progress. Returns its record
 * for the journal. Throws exit 3 (nothing changed) when it fails.
 */
export async function takeBackup(
  ctx: Context,
  loc: DbLocation,
  o: { stateDir: string; label: string; reason: string; forBundle?: string },
): Promise<DbBackup> {
  ctx.log.info(
    `Backing up the database "${loc.target.database}" (${o.reason}) into ${backupsDir(o.stateDir)}`,
  );
  let shown = 0;
  const b = await backupDatabase(ctx.docker, loc.target, {
    dir: backupsDir(o.stateDir),
    label: o.label,
    now: ctx.now,
    signal: ctx.signal,
    onBytes: (n) => {
      ctx.progress.addTotal(n - shown);
      ctx.progress.advance(n - shown);
      shown = n;
    },
  });
  ctx.log.info(
    `Database backup ${b.path}: ${formatBytes(b.bytes)}, sha256 ${b.sha256.slice(0, 12)}…, ${
      (b.durationMs / 1000).toFixed(1)
    } s`,
  );
  return {
    path: b.path,
    bytes: b.bytes,
    sha256: b.sha256,
    database: b.database,
    user: b.user,
    takenAt: b.createdAt,
    durationMs: Math.round(b.durationMs),
    reason: o.reason,
    ...(o.forBundle ? { forBundle: o.forBundle } : {}),
  };
}

/** The journal/audit event of a backup. */
export function backupEvent(b: DbBackup, bundleDigest?: string): DbEvent {
  return {
    kind: "backup",
    reason: b.reason,
    path: b.path,
    bytes: b.bytes,
    sha256: b.sha256,
    database: b.database,
    at: b.takenAt,
    durationMs: b.durationMs,
    ...(bundleDigest ? { bundleDigest } : {}),
  };
}

/**
 * Why a recorded backup can no longer be restored (missing, another size or SHA-256), or
 * undefined when it is the file it was. Reads the whole file (streamed).
 */
export async function backupProblem(b: DbBackup): Promise<string | undefined> {
  let st: Deno.FileInfo;
  try {
    st = await Deno.stat(b.path);
  } catch {
    return `the backup "${b.path}" is missing`;
  }
  if (st.size !== b.bytes) {
    return `the backup "${b.path}" has ${st.size} bytes, ${b.bytes} were written`;
  }
  const sha = await sha256OfFile(b.path);
  if (sha !== b.sha256) {
    return `the backup "${b.path}" has sha256 ${sha?.slice(0, 12)}…, ${
      b.sha256.slice(0, 12)
    }… was written`;
  }
  return undefined;
}

/**
 * Restores a dump into the database at `loc` (one transaction: see restoreDatabase), with
 * progress; returns the event for the journal and the audit log. Stop the gateway first.
 */
export async function restoreDump(
  ctx: Context,
  loc: DbLocation,
  o: { path: string; expectSha256?: string; reason: string; bundleDigest?: string },
): Promise<DbEvent> {
  ctx.log.info(`Restoring the database "${loc.target.database}" from ${o.path} (${o.reason})`);
  let shown = 0;
  const at = ctx.now().toISOString();
  const r = await restoreDatabase(ctx.docker, loc.target, o.path, {
    expectSha256: o.expectSha256,
    signal: ctx.signal,
    onBytes: (n) => {
      ctx.progress.addTotal(n - shown);
      ctx.progress.advance(n - shown);
      shown = n;
    },
  });
  ctx.log.info(
    `Database restored from ${o.path}: ${formatBytes(r.bytes)} in ${
      (r.durationMs / 1000).toFixed(1)
    } s`,
  );
  return {
    kind: "restore",
    reason: o.reason,
    path: o.path,
    bytes: r.bytes,
    sha256: r.sha256,
    database: loc.target.database,
    at,
    durationMs: Math.round(r.durationMs),
    ...(o.bundleDigest ? { bundleDigest: o.bundleDigest } : {}),
  };
}

/**
 * How to restore a backup by hand into an emptied database (the README says the same): for the
 * message of a restore that failed.
 */
export function manualRestore(loc: DbLocation | undefined, path: string): string {
  const c = loc?.container.slice(0, 12) ?? "<postgres container>";
  const u = loc?.target.user ?? "<POSTGRES_USER>";
  const d = loc?.target.database ?? "<POSTGRES_DB>";
  return [
    "To restore it by hand (the gateway and the other services stopped):",
    `  grep -v -e '^\\\\restrict ' -e '^\\\\unrestrict ' ${path} > /tmp/cortex-restore.sql`,
    `  docker exec -i ${c} psql -X -v ON_ERROR_STOP=1 -U ${u} -d ${d} -c 'DROP SCHEMA public CASCADE; CREATE SCHEMA public'`,
    `  docker exec -i ${c} psql -X -1 -v ON_ERROR_STOP=1 -U ${u} -d ${d} < /tmp/cortex-restore.sql`,
  ].join("\n");
}

/**
 * After a successful run: keeps the `keep` newest backups and the one the rollback target needs
 * (its `dbBackup`), removes the rest and left-over `.partial` files of crashed backups. Never
 * throws: a failure is a warning. Returns the file names removed.
 */
export async function pruneAfterRun(
  ctx: Context,
  stateDir: string,
  keep: number,
  rollbackTarget: Release | undefined,
): Promise<string[]> {
  const protect = rollbackTarget?.dbBackup ? [rollbackTarget.dbBackup.path.split("/").pop()!] : [];
  try {
    const removed = await pruneBackups(backupsDir(stateDir), keep, protect);
    if (removed.length) ctx.log.info(`Removed old database backups: ${removed.join(", ")}`);
    return removed;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    ctx.log.warn(`Cannot prune the database backups in ${backupsDir(stateDir)}: ${e}`);
    return [];
  }
}

// ---------------------------------------------------------------------------------------------
// The plan of `install`
// ---------------------------------------------------------------------------------------------

/** What `install` will do with the database, shown in the plan. */
export interface DatabasePlan {
  service: string;
  /** The database found running when the plan was made. */
  running?: {
    container: string;
    user: string;
    database: string;
    sizeBytes: number;
    holdsData: boolean;
    alembicVersion: string | null;
    restoredSha256?: string;
  };
  /** A backup taken before the images change (an upgrade), into the state dir. */
  backup?: {
    reason: string;
    dir: string;
    /** pg_database_size when postgres runs (the plain dump is smaller). */
    estimateBytes?: number;
    /** Postgres is not running: the installed release's postgres is started alone to take it. */
    startPostgres: boolean;
    /** How the installed release runs postgres (when the journal says), to start it alone. */
    stack?: StackOptions;
    /** The backup this upgrade's interrupted run took, reused (its new gateway may have started). */
    reuse?: DbBackup;
  };
  /** The bundle's dump, restored after postgres starts and before the gateway's first start. */
  restore?: {
    /** Bundle-relative (`db/cortex.sql`). */
    file: string;
    path: string;
    bytes: number;
    /** The SHA-256 its checksum gives (checked again while restoring). */
    sha256?: string;
    /** --restore-db: replace a database that holds data, after a backup. */
    replace: boolean;
  };
  /** What will not happen and why; and what will happen only under a condition. */
  notes: string[];
  /** Bytes the backups take in the state dir, and the restore in Docker's data root. */
  disk: { backupBytes: number; restoreBytes: number };
}

export interface DatabasePlanInputs {
  stateDir: string;
  /** The project this run starts. */
  project: string;
  skipDb: boolean;
  restoreDb: boolean;
  skipStart: boolean;
  /** --allow-unlisted / --no-verify: a dump no checksum covers may be restored. */
  allowUnverified: boolean;
  /** The bundle replaces the installed one. */
  upgrade: boolean;
  digest: string;
  bundle: Bundle;
  journal: Journal;
  /** The release in effect before this run. */
  current?: Release;
}

/**
 * A one-transaction restore writes the data and its WAL while the replaced data is still on disk
 * (dropped only at COMMIT): twice the dump's size is counted on Docker's data root.
 */
export const RESTORE_DISK_FACTOR = 2;

/**
 * Plans the database side of an install (see DatabasePlan): looks at the running postgres when
 * it matters, refuses (exit 3) what would overwrite data or cannot work, and exit 4 for a dump no
 * checksum covers or one cut short (its last line is not pg_dump's closing one). Writes nothing.
 */
export async function planDatabase(ctx: Context, i: DatabasePlanInputs): Promise<DatabasePlan> {
  const plan: DatabasePlan = {
    service: DB_SERVICE,
    notes: [],
    disk: { backupBytes: 0, restoreBytes: 0 },
  };
  const dump = i.bundle.dbDump;
  if (i.skipDb) {
    if (i.upgrade) {
      plan.notes.push(
        "--skip-db: no backup of the database before the upgrade (a rollback will not restore it)",
      );
    }
    if (dump) plan.notes.push(`--skip-db: the bundle's ${dump} is not restored`);
    return plan;
  }
  if (i.restoreDb && !dump) {
    throw preflightError(
      "database",
      `Cannot restore the database: the bundle "${i.bundle.dir}" carries no database dump`,
      "Only Admin-UI exports (db/cortex.sql) carry one; run without --restore-db.",
    );
  }
  const fresh = !i.current;
  const wantsRestore = !!dump && (i.restoreDb || fresh);
  if (!i.upgrade && !wantsRestore) {
    if (dump) {
      plan.notes.push(
        `${dump} is not restored: Cortex ${i.current?.release} is installed and keeps its database ` +
          "(--restore-db replaces it, after a backup)",
      );
    }
    return plan;
  }

  // The database as it runs now: the installed release's project for a backup, this run's for a
  // restore (the same unless --project-name changed).
  const project = i.upgrade ? i.current?.stack?.project ?? i.project : i.project;
  const loc = await locateDatabase(ctx, project).catch(() => undefined);
  let info: DatabaseInfo | undefined;
  if (loc) {
    info = await inspectDatabase(ctx.docker, loc.target, ctx.signal);
    plan.running = {
      container: loc.container,
      user: loc.target.user,
      database: loc.target.database,
      sizeBytes: info.sizeBytes,
      holdsData: info.holdsData,
      alembicVersion: info.alembicVersion,
      ...(info.restoredSha256 ? { restoredSha256: info.restoredSha256 } : {}),
    };
  }

  if (i.upgrade) {
    const cur = i.current!;
    const reason = `before the upgrade from ${cur.release} to ${
      i.bundle.cortexVersion ?? "the new release"
    }`;
    plan.backup = {
      reason,
      dir: backupsDir(i.stateDir),
      startPostgres: false,
      ...(cur.stack
        ? {
          stack: {
            cortexDir: cur.stack.cortexDir,
            // As it ran: the copies in the state dir once the checkout changed (0.1 -> 0.2).
            files: (await rollbackFiles(cur, cur.stack)).files,
            project: cur.stack.project,
            profiles: cur.stack.profiles,
          },
        }
        : {}),
    };
    const rec = cur.dbBackup;
    const ip = i.journal.inProgress;
    // The interrupted run of this very upgrade took a backup and then got as far as starting the
    // new stack: the database may carry the new release's changes now, so that backup is the one
    // to keep (a fresh one could not bring the installed release back).
    if (
      rec && rec.forBundle === i.digest && ip?.bundleDigest === i.digest &&
      ip.steps.stack !== undefined
    ) {
      plan.backup.reuse = rec;
      plan.notes.push(`the backup taken by the interrupted run (${rec.path}) is kept`);
    } else if (info) {
      plan.backup.estimateBytes = info.sizeBytes;
    } else if (cur.stack) {
      plan.backup.startPostgres = true;
      plan.notes.push(
        `postgres is not running: Cortex ${cur.release}'s postgres will be started alone for the backup`,
      );
    } else {
      throw preflightError(
        "database",
        `Cannot back up the database before the upgrade: postgres is not running and the journal does not say how Cortex ${cur.release} ran it`,
        "Start the stack (docker compose ... up -d postgres) and run again, or pass --skip-db to upgrade without a backup (a rollback then cannot restore the database).",
      );
    }
  }

  if (dump && !wantsRestore) {
    plan.notes.push(
      `${dump} is not restored: an upgrade keeps the installed database (--restore-db replaces it, after a backup)`,
    );
  }
  if (dump && wantsRestore) {
    const f = i.bundle.files.find((x) => x.path === dump);
    const path = f?.abs ?? `${i.bundle.dir}/${dump}`;
    const sha256 = f?.expected?.sha256;
    const done = sha256 ? restoreOf(i.journal, sha256) : undefined;
    if (!i.restoreDb && done) {
      plan.notes.push(`${dump} was restored on ${done.at}: not again (--restore-db forces it)`);
    } else if (!i.restoreDb && sha256 && info?.restoredSha256 === sha256) {
      plan.notes.push(`the database already holds ${dump} (an earlier run restored it)`);
    } else if (!i.restoreDb && info?.holdsData) {
      throw preflightError(
        "database",
        `Cannot restore ${dump}: the database "${loc!.target.database}" already holds data (${
          info.nonEmptyTables.slice(0, 5).join(", ")
        }${info.nonEmptyTables.length > 5 ? ", ..." : ""}); nothing was changed`,
        "Pass --restore-db to replace it with the bundle's (it is backed up first), or --skip-db to keep it and install without the bundle's database.",
      );
    } else {
      if (i.skipStart) {
        throw preflightError(
          "database",
          `Cannot restore ${dump} with --skip-start: the restore needs postgres started before the gateway's first start`,
          "Run without --skip-start, or pass --skip-db to install without the bundle's database.",
        );
      }
      if (!sha256 && !i.allowUnverified) {
        throw integrityError(
          `Cannot restore ${dump}: no checksum covers it`,
          "Add it to checksums.sha256 on the source host, or pass --allow-unlisted to restore it unverified.",
        );
      }
      if (!(await endsComplete(path))) {
        throw integrityError(
          `Cannot restore ${dump}: it does not end with pg_dump's closing line; it is cut short or not a pg_dump`,
          "Copy the bundle again from the source host (or export it again there); nothing was changed.",
        );
      }
      plan.restore = {
        file: dump,
        path,
        bytes: f?.size ?? 0,
        ...(sha256 ? { sha256 } : {}),
        replace: i.restoreDb,
      };
      if (i.restoreDb) {
        plan.notes.push(
          `--restore-db: the database is backed up first when it holds data, then replaced by ${dump}`,
        );
      } else {
        plan.notes.push(
          `${dump} is restored after postgres starts, before the gateway's first start (refused if the database holds data by then)`,
        );
      }
    }
  }

  plan.disk.backupBytes = (plan.backup && !plan.backup.reuse ? plan.backup.estimateBytes ?? 0 : 0) +
    (plan.restore?.replace ? info?.sizeBytes ?? 0 : 0);
  plan.disk.restoreBytes = (plan.restore?.bytes ?? 0) * RESTORE_DISK_FACTOR;
  return plan;
}

/** Whether a dump file's last 4 KiB hold pg_dump's closing line (a cheap check before anything). */
async function endsComplete(path: string): Promise<boolean> {
  let f: Deno.FsFile;
  try {
    f = await Deno.open(path, { read: true });
  } catch {
    return false;
  }
  try {
    const size = (await f.stat()).size;
    const n = Math.min(size, 4096);
    await f.seek(size - n, Deno.SeekMode.Start);
    const buf = new Uint8Array(n);
    let off = 0;
    while (off < n) {
      const r = await f.read(buf.subarray(off));
      if (r === null) break;
      off += r;
    }
    return tailShowsComplete(buf.subarray(0, off));
  } finally {
    f.close();
  }
}
