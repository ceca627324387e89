/**
 * The state journal: what cortex-install has verified, loaded, seeded and installed on this host,
 * so that a re-run does only what is missing, an interrupted run resumes, and an upgrade can roll
 * back. One JSON file (`journal.json`) in the state dir, replaced atomically on every write, so a
 * crash at any point leaves either the old or the new journal, never a torn one.
 *
 * The helpers below change the journal object in place (and return it for chaining); only
 * readJournal/writeJournal touch the disk.
 */
import { z } from "zod";
import { preflightError } from "../errors.ts";
import { STATE_JOURNAL } from "../layout.ts";
import { writeFileAtomic } from "../host/atomic.ts";

const sha256Hex = z.string().regex(/^[0-9a-f]{64}$/);

/** One file of the bundle whose SHA-256 was computed, and the stat it had then. */
export const ArtifactSchema = z.object({
  size: z.number().int().nonnegative(),
  mtimeMs: z.number(),
  ino: z.number().int().nullable(),
  /** Device number; inode numbers are only unique per device. */
  dev: z.number().int().nullable().optional(),
  /** Status-change time: any write (even one that resets the mtime) moves it. */
  ctimeMs: z.number().nullable().optional(),
  sha256: sha256Hex,
  /** When hashing started (ISO time); a file modified at or after it is not trusted. */
  verifiedAt: z.string(),
});
export type Artifact = z.infer<typeof ArtifactSchema>;

/** One env file written by an install, with the backup of what was there before. */
export const EnvFileSchema = z.object({
  sha256: sha256Hex,
  /** Path of the backup of the previous content, when there was one. */
  backup: z.string().optional(),
});

/**
 * A database backup (a `pg_dump` file written by backupDatabase): what a rollback restores.
 */
export const DbBackupSchema = z.object({
  /** Absolute path of the dump (its `.sha256` lies beside it). */
  path: z.string(),
  bytes: z.number().int().nonnegative(),
  sha256: sha256Hex,
  /** The database and user it was dumped from (the postgres container's settings). */
  database: z.string(),
  user: z.string(),
  takenAt: z.string(),
  durationMs: z.number().nonnegative(),
  /** Why it was taken, for people: "before the upgrade to 0.1.2". */
  reason: z.string(),
  /** The bundle digest of the upgrade it was taken before, when it was. */
  forBundle: z.string().optional(),
});
export type DbBackup = z.infer<typeof DbBackupSchema>;

/** One thing done to the database: a backup taken or a dump restored (journal and audit log). */
export const DbEventSchema = z.object({
  kind: z.enum(["backup", "restore"]),
  /** For people: "before the upgrade to 0.1.2", "rollback to 0.1.1", "db/cortex.sql of the bundle". */
  reason: z.string(),
  /** The file written (backup) or read (restore), absolute. */
  path: z.string(),
  bytes: z.number().int().nonnegative(),
  sha256: sha256Hex,
  database: z.string(),
  at: z.string(),
  durationMs: z.number().nonnegative(),
  /** The bundle the run installed, when a run of install did it. */
  bundleDigest: z.string().optional(),
});
export type DbEvent = z.infer<typeof DbEventSchema>;

/** One install (or attempt) of a release, kept in history (newest last). */
export const ReleaseSchema = z.object({
  /** Cortex version of the bundle, e.g. "0.1.1" ("unknown" when the bundle does not say). */
  release: z.string(),
  /** Digest identifying the bundle (sha256 of its checksums/pins), `sha256:<hex>`. */
  bundleDigest: z.string(),
  bundleDir: z.string(),
  installedAt: z.string(),
  /** Engine images by role ("vllm", "llamacpp"): the refs written to the settings. */
  engineRefs: z.record(z.string(), z.string()),
  /** Every image ref of the release and the image ID it had (what a rollback re-tags). */
  images: z.record(z.string(), z.string()),
  /** Env files written, by absolute path. */
  envFiles: z.record(z.string(), EnvFileSchema),
  /** The compose override file written, when any (absolute path). */
  override: z.string().optional(),
  outcome: z.enum(["installed", "rolled-back", "failed"]),
  /**
   * The backup of the database as this release ran it, taken when an upgrade left it: what a
   * rollback to this release restores (the newest such backup; an earlier one is replaced).
   */
  dbBackup: DbBackupSchema.optional(),
  /**
   * The install's inputs other than the bundle (dirs, compose file, project, profiles, forced
   * network, manifest): a re-run with other inputs is not a no-op.
   */
  inputs: z.string().optional(),
  /** How the stack was run: needed to check, repair or roll it back without the bundle. */
  stack: z.object({
    cortexDir: z.string(),
    composeFile: z.string(),
    project: z.string(),
    profiles: z.array(z.string()),
    /** The compose that ran it (`--compose`), when one was asked for; absent: auto. */
    compose: z.enum(["v1", "v2"]).optional(),
    /** Readiness URLs of that release's manifest. */
    readiness: z.array(z.object({
      service: z.string(),
      url: z.string(),
      expectJson: z.record(z.string(), z.string()).optional(),
    })).default([]),
    /**
     * Copies of the compose file and the override as this release ran them, in the state dir:
     * a rollback runs these when the checkout has changed since (0.1 -> 0.2 in place).
     */
    saved: z.object({
      composeFile: z.string(),
      override: z.string().optional(),
      /** SHA-256 of the checkout's compose file when copied (unchanged: the checkout's runs). */
      sha256: z.string().optional(),
    }).optional(),
  }).optional(),
  /** The release line ("0.1", "0.2"); absent in older journals (then read from `release`). */
  line: z.string().optional(),
  /** How it was installed: absent = by cortex-install; "by-hand": found running, no journal. */
  origin: z.enum(["by-hand"]).optional(),
});
export type Release = z.infer<typeof ReleaseSchema>;

export const StepStateSchema = z.enum(["done", "running"]);
export type StepState = z.infer<typeof StepStateSchema>;

/** The run under way (or the one that crashed): what a resume may skip. */
export const InProgressSchema = z.object({
  bundleDigest: z.string(),
  startedAt: z.string(),
  pid: z.number().int(),
  /** Install steps by name ("verify", "load", ...); a missing step has not started. */
  steps: z.record(z.string(), StepStateSchema),
});
export type InProgress = z.infer<typeof InProgressSchema>;

/** Model folders seeded, by target path. */
export const ModelRecordSchema = z.object({
  files: z.number().int().nonnegative(),
  bytes: z.number().nonnegative(),
  /** SHA-256 over the `<sha256>  <relative path>\n` lines of the folder's files (treeDigest). */
  sha256Tree: sha256Hex,
});
export type ModelRecord = z.infer<typeof ModelRecordSchema>;

/** A summary of the last finished run. */
export const LastRunSchema = z.object({
  command: z.string(),
  startedAt: z.string(),
  finishedAt: z.string(),
  outcome: z.enum(["ok", "failed", "interrupted"]),
  exitCode: z.number().int(),
  bundleDigest: z.string().optional(),
});
export type LastRun = z.infer<typeof LastRunSchema>;

/**
 * The journal, version 1:
 * - `releases`: every install attempt, newest last; `current` is the index of the release in
 *   effect (absent before the first successful install). Releases are only ever appended.
 * - `inProgress`: set when a run starts, its steps marked running/done, removed when it ends;
 *   found at start-up it means the previous run crashed (or is running: see lock.ts).
 * - `artifacts`: verified files by absolute path (see isVerified).
 * - `loaded`: image refs loaded or found, with their image IDs.
 * - `models`: seeded model folders by target path.
 * - `lastRun`: the last finished run.
 * - `database`: backups taken and dumps restored (a dump restored once is not restored again).
 */
export const JournalSchema = z.object({
  version: z.literal(1),
  releases: z.array(ReleaseSchema),
  current: z.number().int().nonnegative().optional(),
  inProgress: InProgressSchema.optional(),
  artifacts: z.record(z.string(), ArtifactSchema),
  loaded: z.record(z.string(), z.string()),
  models: z.record(z.string(), ModelRecordSchema),
  lastRun: LastRunSchema.optional(),
  /** Backups taken and dumps restored, newest last (the last DB_EVENTS_KEPT). */
  database: z.object({ events: z.array(DbEventSchema) }).optional(),
}).refine((j) => j.current === undefined || j.current < j.releases.length, {
  message: "current is not the index of a release",
  path: ["current"],
});
export type Journal = z.infer<typeof JournalSchema>;

/** A fresh, empty journal. */
export function emptyJournal(): Journal {
  return { version: 1, releases: [], artifacts: {}, loaded: {}, models: {} };
}

/** The journal's path in a state dir. */
export function journalPath(stateDir: string): string {
  return `${stateDir.replace(/\/+$/, "")}/${STATE_JOURNAL}`;
}

/**
 * Reads the journal of a state dir. A missing file gives an empty journal; a file that is not
 * a valid journal gives a preflight error naming the file, with a hint (never a stack trace).
 */
export async function readJournal(stateDir: string): Promise<Journal> {
  const path = journalPath(stateDir);
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return emptyJournal();
    throw preflightError(
      "state",
      `Cannot read the state journal "${path}": ${(e as Error).message}`,
      "Run cortex-install as a user who can read the state dir (usually root), or pass --state-dir.",
    );
  }
  const hint = `Move it aside (mv "${path}" "${path}.bad") and run again: cortex-install then ` +
    "checks every image and file again instead of trusting the journal.";
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    throw preflightError(
      "state",
      `Cannot read the state journal "${path}": it is not valid JSON (${(e as Error).message})`,
      hint,
    );
  }
  const version = (data as { version?: unknown } | null)?.version;
  if (typeof version === "number" && version > 1) {
    throw preflightError(
      "state",
      `Cannot read the state journal "${path}": it has version ${version}, this cortex-install reads version 1`,
      "It was written by a newer cortex-install: use that one, or move the journal aside.",
    );
  }
  const parsed = JournalSchema.safeParse(data);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue.path.length ? issue.path.join(".") : "(top)";
    throw preflightError(
      "state",
      `Cannot read the state journal "${path}": ${where}: ${issue.message}`,
      hint,
    );
  }
  return parsed.data;
}

/** Test hooks of writeJournal (to simulate a crash between the stages of its atomic write). */
export interface AtomicHooks {
  /** Called after the temp file is written and synced, before the rename. */
  beforeRename?: () => void | Promise<void>;
}

/** Writes the journal atomically (mode 0600), creating the state dir (0700) when needed. */
export async function writeJournal(
  stateDir: string,
  j: Journal,
  hooks: AtomicHooks = {},
): Promise<void> {
  await Deno.mkdir(stateDir, { recursive: true, mode: 0o700 });
  const text = JSON.stringify(JournalSchema.parse(j), null, 2) + "\n";
  // The temp name is fixed per target: callers hold the state lock, so there is one writer, and
  // a temp file left by a crash is simply overwritten next time.
  await writeFileAtomic(journalPath(stateDir), text, {
    mode: 0o600,
    fixedTemp: true,
    step: "state",
    beforeRename: hooks.beforeRename ? () => hooks.beforeRename!() : undefined,
  });
}

// ---- verified files ----

/** The parts of a `Deno.FileInfo` that identify a file's content version. */
export interface StatLike {
  size: number;
  mtime: Date | null;
  ino: number | null;
  dev?: number | null;
  ctime?: Date | null;
}

/**
 * The recorded SHA-256 of a file when it can be trusted without hashing again: the file was
 * verified, and its size, mtime, inode (and device and ctime, when known) are unchanged, and it
 * was not modified at or after the moment hashing started (a write in the same clock tick would
 * not move the mtime). Otherwise undefined.
 */
export function verifiedSha256(j: Journal, path: string, stat: StatLike): string | undefined {
  const a = j.artifacts[path];
  if (!a || !stat.mtime) return undefined;
  if (a.size !== stat.size || a.mtimeMs !== stat.mtime.getTime()) return undefined;
  if (a.ino === null || stat.ino === null || a.ino !== stat.ino) return undefined;
  if (a.dev != null && stat.dev != null && a.dev !== stat.dev) return undefined;
  if (a.ctimeMs != null && stat.ctime && a.ctimeMs !== stat.ctime.getTime()) return undefined;
  if (racy(a.mtimeMs, Date.parse(a.verifiedAt))) return undefined;
  // Deno reports ctime to the whole second: a change in the second hashing began is unseen.
  if (a.ctimeMs != null && a.ctimeMs + 1000 > Date.parse(a.verifiedAt)) return undefined;
  return a.sha256;
}

/**
 * Whether a modification may have gone unseen: the mtime is not clearly before hashing began.
 * An mtime with no sub-second part suggests a coarse clock (FAT: 2 s), so a margin is needed.
 */
function racy(mtimeMs: number, startedMs: number): boolean {
  const coarse = mtimeMs % 1000 === 0;
  return coarse ? mtimeMs + 2000 > startedMs : mtimeMs >= startedMs;
}

/**
 * Whether a file is verified and unchanged since (see verifiedSha256); with `expected`, also
 * whether its recorded SHA-256 is that one.
 */
export function isVerified(j: Journal, path: string, stat: StatLike, expected?: string): boolean {
  const sha = verifiedSha256(j, path, stat);
  return sha !== undefined && (expected === undefined || sha === expected.toLowerCase());
}

/**
 * Records that a file hashed to `sha256`. `stat` must be the stat taken BEFORE hashing began and
 * `startedAt` the time hashing began: a change during hashing then shows up next time.
 */
export function markVerified(
  j: Journal,
  path: string,
  stat: StatLike,
  sha256: string,
  startedAt: Date = new Date(),
): Journal {
  if (!stat.mtime) {
    // Without an mtime the file cannot be recognised later: do not record it.
    delete j.artifacts[path];
    return j;
  }
  j.artifacts[path] = {
    size: stat.size,
    mtimeMs: stat.mtime.getTime(),
    ino: stat.ino,
    dev: stat.dev ?? null,
    ctimeMs: stat.ctime ? stat.ctime.getTime() : null,
    sha256: sha256.toLowerCase(),
    verifiedAt: startedAt.toISOString(),
  };
  return j;
}

/** Forgets a file's verification (e.g. after it failed to load). */
export function forgetVerified(j: Journal, path: string): Journal {
  delete j.artifacts[path];
  return j;
}

// ---- runs and steps ----

/**
 * Starts a run for a bundle. An unfinished run of the SAME bundle keeps its done steps (a
 * resume); one of another bundle is replaced. Returns the steps already done.
 */
export function beginRun(
  j: Journal,
  bundleDigest: string,
  pid: number,
  now: Date = new Date(),
): string[] {
  const prev = j.inProgress;
  const done = prev && prev.bundleDigest === bundleDigest
    ? Object.entries(prev.steps).filter(([, s]) => s === "done").map(([k]) => k)
    : [];
  j.inProgress = {
    bundleDigest,
    startedAt: now.toISOString(),
    pid,
    steps: Object.fromEntries(done.map((k) => [k, "done" as const])),
  };
  return done;
}

/** Marks a step of the run in progress as running or done (a no-op without a run). */
export function recordStep(j: Journal, step: string, state: StepState): Journal {
  if (j.inProgress) j.inProgress.steps[step] = state;
  return j;
}

/** Whether a step of the unfinished run of this bundle is done (so a resume can skip it). */
export function isStepDone(j: Journal, bundleDigest: string, step: string): boolean {
  return j.inProgress?.bundleDigest === bundleDigest && j.inProgress.steps[step] === "done";
}

/** Ends the run in progress and records its summary. */
export function finishRun(j: Journal, last: LastRun): Journal {
  delete j.inProgress;
  j.lastRun = last;
  return j;
}

// ---- releases ----

/**
 * Appends a release to the history. An "installed" release becomes the current one; a
 * "failed" or "rolled-back" one leaves `current` as it was. Returns its index.
 */
export function recordRelease(j: Journal, release: Release): number {
  j.releases.push(release);
  const index = j.releases.length - 1;
  if (release.outcome === "installed") j.current = index;
  return index;
}

/** Marks a release as rolled back, and makes `to` (an index) the current one again. */
export function markRolledBack(j: Journal, index: number, to?: number): Journal {
  const r = j.releases[index];
  if (r) r.outcome = "rolled-back";
  if (to !== undefined && j.releases[to]?.outcome === "installed") j.current = to;
  else if (j.current === index) delete j.current;
  return j;
}

/** The release in effect, if any. */
export function currentRelease(j: Journal): Release | undefined {
  return j.current === undefined ? undefined : j.releases[j.current];
}

/**
 * The release to roll back to: the newest "installed" release before the current one (before
 * the end of the history when none is current). Returns it with its index.
 */
export function previousRelease(j: Journal): { index: number; release: Release } | undefined {
  const from = j.current ?? j.releases.length;
  for (let i = from - 1; i >= 0; i--) {
    const r = j.releases[i];
    if (r.outcome === "installed") return { index: i, release: r };
  }
  return undefined;
}

// ---- images and models ----

/** Records that a ref is in the engine with this image ID. */
export function recordLoaded(j: Journal, ref: string, imageId: string): Journal {
  j.loaded[ref] = imageId;
  return j;
}

/** Records a seeded model folder. */
export function recordModel(j: Journal, target: string, m: ModelRecord): Journal {
  j.models[target] = m;
  return j;
}

// ---- the database ----

/** How many database events the journal keeps (the audit log keeps every one). */
export const DB_EVENTS_KEPT = 50;

/** Records a backup or restore (the oldest beyond DB_EVENTS_KEPT are dropped). */
export function recordDbEvent(j: Journal, e: DbEvent): Journal {
  j.database ??= { events: [] };
  j.database.events.push(e);
  if (j.database.events.length > DB_EVENTS_KEPT) {
    j.database.events.splice(0, j.database.events.length - DB_EVENTS_KEPT);
  }
  return j;
}

/** The newest event of a kind, if any. */
export function lastDbEvent(j: Journal, kind: DbEvent["kind"]): DbEvent | undefined {
  return j.database?.events.findLast((e) => e.kind === kind);
}

/** The newest restore of a file with this SHA-256, if one is recorded. */
export function restoreOf(j: Journal, sha256: string): DbEvent | undefined {
  return j.database?.events.findLast((e) => e.kind === "restore" && e.sha256 === sha256);
}
