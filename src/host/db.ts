/**
 * The Cortex database as part of a release (issue 9): back up the running database with
 * `pg_dump` through the postgres container, restore a dump into an emptied database, tell whether
 * a database already holds data, estimate a dump's size, and keep the last N backups.
 *
 * Every docker call goes through the Docker seam (src/docker.ts): the steps pass `ctx.docker`, unit
 * tests the scripted engine (test/support/scripted_docker.ts) or a fake. Nothing here reads a whole
 * dump into memory: a backup streams pg_dump's stdout to a file, a restore streams the file to
 * psql's stdin, both through fixed-size chunks.
 *
 * Restore safety: the restore runs in ONE transaction, emptying included (`BEGIN`; drop every
 * non-system schema; recreate `public`; the filtered dump; `COMMIT`). PostgreSQL's DDL is
 * transactional, so a failure anywhere (an SQL error under `ON_ERROR_STOP=1`, a truncated or
 * tampered file, a refused meta-command, psql killed, the docker CLI killed) leaves the database
 * exactly as it was: `COMMIT` is sent only after the whole file was read, found complete and
 * matched its expected SHA-256. (Alternatives: restoring into a fresh database renamed into place
 * needs every other connection gone and leaves a stray database after a kill -9; a backup before
 * each restore costs a second dump. The transaction needs neither.)
 */
import { createSha256 } from "../hash.ts";
import type { DockerRunner, RunResult } from "../docker.ts";
import { ExitCode, InstallError, InterruptedError } from "../errors.ts";
import { DUMP_COMPLETE_LINE, DumpFilter, tailShowsComplete } from "./sqldump.ts";

export type { DockerRunner, RunResult };

/** Where the database is and who to connect as. */
export interface PgTarget {
  /** The postgres container (ID or name); commands run in it with `docker exec`. */
  container: string;
  /** POSTGRES_USER in force (the official image's default is `postgres`). */
  user: string;
  /** POSTGRES_DB in force (default: the user). */
  database: string;
  /**
   * POSTGRES_PASSWORD, forwarded as `docker exec -e PGPASSWORD` through the CLI's environment, never
   * in argv. The official image trusts its Unix socket, so it is usually not needed.
   */
  password?: string;
}

/**
 * The settings in force of a postgres container, from its environment (`Config.Env`, what compose
 * rendered when it created the container): POSTGRES_USER (default `postgres`), POSTGRES_DB (default
 * the user), POSTGRES_PASSWORD. Pure.
 */
export function pgTargetFromEnv(container: string, env: string[]): PgTarget {
  const get = (k: string) => {
    const line = env.findLast((l) => l.startsWith(`${k}=`));
    return line === undefined ? undefined : line.slice(k.length + 1);
  };
  const user = get("POSTGRES_USER") || "postgres";
  const database = get("POSTGRES_DB") || user;
  const password = get("POSTGRES_PASSWORD") || undefined;
  return { container, user, database, ...(password ? { password } : {}) };
}

/** `pgTargetFromEnv` of a running container (`docker inspect`). Throws when it is absent. */
export async function pgTargetFromContainer(
  docker: DockerRunner,
  container: string,
  signal?: AbortSignal,
): Promise<PgTarget> {
  const r = await docker.run(["inspect", "--format", "{{json .Config.Env}}", container], {
    signal,
  });
  if (r.code !== 0) {
    throw dbError(
      `Cannot read the settings of the postgres container "${container}": docker inspect failed`,
      ExitCode.Docker,
      "Is the Cortex stack running? `docker ps` lists its containers.",
      r.stderr,
    );
  }
  return pgTargetFromEnv(container, JSON.parse(r.stdout) ?? []);
}

/**
 * The running container of a compose service (default `postgres`) of a project, found by
 * compose's labels (works for Compose v1 and v2), or undefined when none runs.
 */
export async function findServiceContainer(
  docker: DockerRunner,
  project: string,
  service = "postgres",
  signal?: AbortSignal,
): Promise<string | undefined> {
  const r = await docker.run([
    "ps",
    "-q",
    "--filter",
    `label=com.docker.compose.project=${project}`,
    "--filter",
    `label=com.docker.compose.service=${service}`,
  ], { signal });
  if (r.code !== 0) return undefined;
  return r.stdout.split("\n").map((s) => s.trim()).find(Boolean);
}

/** `docker exec` arguments (password through the environment only). */
function execArgs(t: PgTarget, interactive: boolean): string[] {
  return [
    "exec",
    ...(interactive ? ["-i"] : []),
    ...(t.password ? ["-e", "PGPASSWORD"] : []),
    t.container,
  ];
}

function secretEnv(t: PgTarget): Record<string, string> | undefined {
  return t.password ? { PGPASSWORD: t.password } : undefined;
}

/** psql options shared by every call: no psqlrc, no password prompt, stop on the first error. */
function psqlArgs(t: PgTarget): string[] {
  return [
    "psql",
    "-X",
    "--no-password",
    "-v",
    "ON_ERROR_STOP=1",
    "--username",
    t.user,
    "--dbname",
    t.database,
  ];
}

function dbError(msg: string, code: ExitCode, hint?: string, detail?: string): InstallError {
  return new InstallError("database", msg, code, hint, detail ? lastLines(detail) : undefined);
}

function lastLines(text: string, n = 12): string {
  return text.split(/\r?\n/).filter((l) => l.trim() !== "").slice(-n).join("\n");
}

/** Whether the server accepts connections (`pg_isready` in the container). */
export async function pgIsReady(
  docker: DockerRunner,
  t: PgTarget,
  signal?: AbortSignal,
): Promise<boolean> {
  const r = await docker.run(
    [...execArgs(t, false), "pg_isready", "-q", "--username", t.user, "--dbname", t.database],
    { env: secretEnv(t), signal },
  );
  return r.code === 0;
}

/** What is in a database, to plan a restore or a backup. */
export interface DatabaseInfo {
  /** `pg_database_size()`: bytes on disk (indexes and free space included). */
  sizeBytes: number;
  serverVersion: string;
  /** User tables (outside pg_catalog / information_schema). */
  tables: number;
  /** `schema.table` of every user table with at least one row, sorted. */
  nonEmptyTables: string[];
  /** alembic_version's revision (Cortex 0.2), or null: no such table (0.1, or empty). */
  alembicVersion: string | null;
  /** Whether any table other than alembic_version has a row: a restore would overwrite data. */
  holdsData: boolean;
  /** The SHA-256 of the dump restoreDatabase last restored here, from the database's comment. */
  restoredSha256?: string;
}

const INSPECT_SQL = `
WITH t AS (
  SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
     AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'
)
SELECT json_build_object(
  'size', pg_database_size(current_database()),
  'version', current_setting('server_version'),
  'tables', (SELECT count(*) FROM t),
  'non_empty', (SELECT coalesce(json_agg(x ORDER BY x), '[]') FROM (
    SELECT format('%s.%s', nspname, relname) AS x FROM t
     WHERE (xpath('/row/x/text()', query_to_xml(
       format('SELECT EXISTS (SELECT 1 FROM %I.%I) AS x', nspname, relname), false, true, '')))[1]::text = 'true'
  ) s),
  'alembic', CASE WHEN to_regclass('public.alembic_version') IS NULL THEN NULL ELSE
    (xpath('/row/v/text()', query_to_xml(
      'SELECT version_num AS v FROM public.alembic_version LIMIT 1', false, true, '')))[1]::text END,
  'comment', shobj_description((SELECT oid FROM pg_database WHERE datname = current_database()),
    'pg_database')
)`;

/**
 * Looks at the database: size, tables, which hold rows, alembic revision. One psql query (each
 * table is probed with `EXISTS`, never counted), so it is cheap on a large database.
 */
export async function inspectDatabase(
  docker: DockerRunner,
  t: PgTarget,
  signal?: AbortSignal,
): Promise<DatabaseInfo> {
  const r = await docker.run(
    [...execArgs(t, false), ...psqlArgs(t), "-q", "-At", "-c", INSPECT_SQL],
    { env: secretEnv(t), signal },
  );
  if (r.code !== 0) {
    throw dbError(
      `Cannot read the database "${t.database}" as "${t.user}": psql exited ${r.code}`,
      ExitCode.Preflight,
      "Check that the postgres container is healthy and that POSTGRES_USER/POSTGRES_DB match it.",
      r.stderr,
    );
  }
  const j = JSON.parse(r.stdout.trim()) as {
    size: number;
    version: string;
    tables: number;
    non_empty: string[];
    alembic: string | null;
    comment: string | null;
  };
  const nonEmpty = j.non_empty ?? [];
  const mark = j.comment?.startsWith(MARKER_PREFIX)
    ? j.comment.slice(MARKER_PREFIX.length).trim()
    : undefined;
  return {
    sizeBytes: Number(j.size),
    serverVersion: j.version,
    tables: Number(j.tables),
    nonEmptyTables: nonEmpty,
    alembicVersion: j.alembic,
    holdsData: nonEmpty.some((x) => x !== "public.alembic_version"),
    ...(mark && /^[0-9a-f]{64}$/.test(mark) ? { restoredSha256: mark } : {}),
  };
}

/**
 * An estimate of a plain dump's size for the disk preflight: `pg_database_size()`. Measured on
 * Cortex-like data (bench/lib/db.ts): the plain dump is smaller than the database on disk (no
 * indexes, no free space), so this errs on the safe side.
 */
export async function estimateDumpBytes(
  docker: DockerRunner,
  t: PgTarget,
  signal?: AbortSignal,
): Promise<number> {
  return (await inspectDatabase(docker, t, signal)).sizeBytes;
}

/** A backup file written by `backupDatabase`. */
export interface Backup {
  /** Absolute path of the dump. */
  path: string;
  /** Its file name, e.g. `cortex-db-20260910T081502Z-before-0.2.0.sql`. */
  file: string;
  bytes: number;
  /** SHA-256 (hex) of the file; also in `<path>.sha256` in `sha256sum -c` format. */
  sha256: string;
  database: string;
  user: string;
  /** ISO time the dump started. */
  createdAt: string;
  durationMs: number;
}

export interface BackupOptions {
  /** Directory of the backups (created 0700; dumps hold secrets: files are 0600). */
  dir: string;
  /** Words added to the name, e.g. `before-0.2.0` ([A-Za-z0-9._-], others become `-`). */
  label?: string;
  now?: () => Date;
  signal?: AbortSignal;
  /** Called with the bytes written so far (progress). */
  onBytes?: (bytes: number) => void;
}

/** Backup file names: `cortex-db-<UTC stamp>[-label].sql`. */
const BACKUP_RE = /^cortex-db-(\d{8}T\d{6}Z)(?:-[A-Za-z0-9._-]+)?\.sql$/;
/** Suffix of a dump being written; a left-over one is a crashed backup. */
export const PARTIAL_SUFFIX = ".partial";

function stamp(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, "Z").replace(/[-:]/g, "");
}

/**
 * `pg_dump` of the database (plain SQL, as Cortex's own dumps) through `docker exec` in the postgres
 * container, streamed into `<dir>/cortex-db-<stamp>[-label].sql`: written as `.partial`, fsynced,
 * checked complete (pg_dump exited 0, the file is not empty and ends with pg_dump's closing line),
 * renamed into place, with a `.sha256` beside it, and the directory fsynced. Returns the file, its
 * size and SHA-256. On any failure nothing is left but what was there before, and it throws an
 * InstallError (step "database", exit 3: a failed backup stops the upgrade before anything changed).
 */
export async function backupDatabase(
  docker: DockerRunner,
  t: PgTarget,
  o: BackupOptions,
): Promise<Backup> {
  const started = (o.now ?? (() => new Date()))();
  const t0 = performance.now();
  const label = o.label ? "-" + o.label.replace(/[^A-Za-z0-9._-]+/g, "-") : "";
  let file = `cortex-db-${stamp(started)}${label}.sql`;
  let out: Deno.FsFile;
  try {
    await Deno.mkdir(o.dir, { recursive: true, mode: 0o700 });
    for (
      let i = 2;
      await exists(`${o.dir}/${file}`) || await exists(`${o.dir}/${file}${PARTIAL_SUFFIX}`);
      i++
    ) {
      file = `cortex-db-${stamp(started)}${label}-${i}.sql`;
    }
    out = await Deno.open(`${o.dir}/${file}${PARTIAL_SUFFIX}`, {
      write: true,
      createNew: true,
      mode: 0o600,
    });
  } catch (e) {
    throw dbError(
      `Cannot back up the database "${t.database}": cannot write in "${o.dir}": ${errText(e)}`,
      ExitCode.Preflight,
      "Nothing was changed. Check the state dir (--state-dir) is writable.",
    );
  }
  const path = `${o.dir}/${file}`;
  const partial = path + PARTIAL_SUFFIX;
  const hash = createSha256();
  let bytes = 0;
  let tail: Uint8Array = new Uint8Array(0);
  let closed = false;
  const close = () => {
    if (!closed) out.close();
    closed = true;
  };
  try {
    const sink = new WritableStream<Uint8Array>({
      write: async (chunk) => {
        hash.update(chunk);
        bytes += chunk.length;
        tail = keepTail(tail, chunk, 4096);
        for (let off = 0; off < chunk.length;) off += await out.write(chunk.subarray(off));
        o.onBytes?.(bytes);
      },
    });
    let r: RunResult;
    try {
      r = await docker.run(
        [
          ...execArgs(t, false),
          "pg_dump",
          "--no-password",
          "--username",
          t.user,
          "--dbname",
          t.database,
        ],
        { stdout: sink, env: secretEnv(t), signal: o.signal },
      );
    } catch (e) {
      if (o.signal?.aborted) throw new InterruptedError();
      throw dbError(
        `Cannot back up the database "${t.database}": writing ${partial} failed: ${errText(e)}`,
        ExitCode.Preflight,
        "Free space in the state dir (the backup needs about the database's size), then run again.",
      );
    }
    if (o.signal?.aborted) throw new InterruptedError();
    if (r.code !== 0) {
      throw dbError(
        `Cannot back up the database "${t.database}" as "${t.user}": pg_dump exited ${r.code}`,
        ExitCode.Preflight,
        "Nothing was changed. Check that the postgres container runs and that POSTGRES_USER/POSTGRES_DB are the ones it was created with.",
        r.stderr,
      );
    }
    if (bytes === 0 || !tailShowsComplete(tail)) {
      throw dbError(
        `Cannot back up the database "${t.database}": the dump is incomplete (${bytes} bytes, no "${DUMP_COMPLETE_LINE}" line)`,
        ExitCode.Preflight,
        "Nothing was changed. Run again; if it persists, look at the postgres container's log.",
        r.stderr,
      );
    }
    await out.sync();
    close();
    const sha256 = hash.hex();
    await Deno.rename(partial, path);
    await writeSynced(`${path}.sha256`, `${sha256}  ${file}\n`);
    await syncDir(o.dir);
    return {
      path,
      file,
      bytes,
      sha256,
      database: t.database,
      user: t.user,
      createdAt: started.toISOString(),
      durationMs: performance.now() - t0,
    };
  } catch (e) {
    close();
    await Deno.remove(partial).catch(() => {});
    throw e;
  }
}

function keepTail(tail: Uint8Array, chunk: Uint8Array, n: number): Uint8Array {
  if (chunk.length >= n) return chunk.slice(chunk.length - n);
  const keepOld = Math.min(tail.length, n - chunk.length);
  const r = new Uint8Array(keepOld + chunk.length);
  r.set(tail.subarray(tail.length - keepOld), 0);
  r.set(chunk, keepOld);
  return r;
}

function errText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

async function writeSynced(path: string, text: string): Promise<void> {
  const tmp = `${path}.tmp`;
  const f = await Deno.open(tmp, { write: true, create: true, truncate: true, mode: 0o600 });
  try {
    const data = new TextEncoder().encode(text);
    for (let off = 0; off < data.length;) off += await f.write(data.subarray(off));
    await f.sync();
  } finally {
    f.close();
  }
  await Deno.rename(tmp, path);
}

async function syncDir(dir: string): Promise<void> {
  const d = await Deno.open(dir, { read: true });
  try {
    await d.sync();
  } catch {
    // Some filesystems refuse fsync on a directory; the rename is still ordered after the data.
  } finally {
    d.close();
  }
}

export interface RestoreOptions {
  /** The file's SHA-256 must be this (checked while streaming; a mismatch never commits). */
  expectSha256?: string;
  /** Keep `ALTER ... OWNER TO` (default false: everything belongs to the restoring user). */
  keepOwners?: boolean;
  /** How long the emptying may wait for a lock (default 30 s; a running gateway holds them). */
  lockTimeoutMs?: number;
  signal?: AbortSignal;
  /** Called with the bytes of the file read so far (progress). */
  onBytes?: (bytes: number) => void;
  /** Read size (default 1 MiB). */
  chunkSize?: number;
}

export interface RestoreResult {
  /** Bytes of the dump file read. */
  bytes: number;
  sha256: string;
  /** Lines blanked: `\restrict`/`\unrestrict`, `pg_dump:` messages, `OWNER TO`. */
  stripped: { restrict: number; pgDumpMessages: number; owner: number };
  durationMs: number;
}

/** What psql prints after the COMMIT went through (the only proof the restore was committed). */
const COMMITTED = "cit-restore-committed";

/** The database's comment after a restore: which dump it holds (see DatabaseInfo.restoredSha256). */
const MARKER_PREFIX = "cortex-install: restored from a dump with sha256 ";

/**
 * Marks the database with the restored dump's SHA-256 (its comment), in the restore's transaction:
 * a re-run after a crash right after COMMIT can tell the dump is already there. A user who does not
 * own the database cannot comment it: the restore goes on without the mark.
 */
function markerSql(sha256: string): string {
  return "DO $cit$ BEGIN EXECUTE format('COMMENT ON DATABASE %I IS %L', current_database(), " +
    `'${MARKER_PREFIX}${sha256}'); EXCEPTION WHEN insufficient_privilege THEN NULL; END $cit$;\n`;
}

/** One line (psql's line 1), so line N+1 of psql's input is line N of the dump. */
function prelude(lockTimeoutMs: number): string {
  return [
    "BEGIN;",
    `SET LOCAL lock_timeout = '${Math.max(1, Math.floor(lockTimeoutMs))}ms';`,
    "SET LOCAL client_min_messages = warning;",
    "DO $cit$ DECLARE s name; BEGIN",
    "FOR s IN SELECT nspname FROM pg_namespace WHERE nspname NOT IN ('pg_catalog', 'information_schema')",
    "AND nspname NOT LIKE 'pg\\_toast%' AND nspname NOT LIKE 'pg\\_temp\\_%' LOOP",
    "EXECUTE format('DROP SCHEMA %I CASCADE', s); END LOOP;",
    "PERFORM lo_unlink(oid) FROM pg_largeobject_metadata;",
    // PostgreSQL 15+: public belongs to pg_database_owner, PUBLIC may only use it.
    "IF current_setting('server_version_num')::int >= 150000 THEN",
    "CREATE SCHEMA public AUTHORIZATION pg_database_owner; GRANT USAGE ON SCHEMA public TO PUBLIC;",
    "ELSE CREATE SCHEMA public; GRANT ALL ON SCHEMA public TO PUBLIC; END IF;",
    "COMMENT ON SCHEMA public IS 'standard public schema'; END $cit$;",
  ].join(" ") + "\n";
}

/**
 * Restores a plain pg_dump file into the database, replacing everything in it, in one
 * transaction (see the module doc): the file is streamed through `DumpFilter` (strips
 * `\restrict`/`\unrestrict`, refuses other meta-commands, checks completeness) into
 * `docker exec -i <postgres> psql -v ON_ERROR_STOP=1`, and `COMMIT` is sent only when the whole file
 * was read, complete, and matched `expectSha256` when given. Returns what was read and stripped.
 * Any failure throws an InstallError (step "database", exit 6 for a failed restore, exit 4 for a
 * file that is incomplete, refused or not the expected one) whose message says the database was
 * left as it was. Stop the gateway first: it holds locks the emptying waits for.
 */
export async function restoreDatabase(
  docker: DockerRunner,
  t: PgTarget,
  dumpPath: string,
  o: RestoreOptions = {},
): Promise<RestoreResult> {
  const t0 = performance.now();
  let file: Deno.FsFile;
  try {
    file = await Deno.open(dumpPath, { read: true });
  } catch (e) {
    throw dbError(
      `Cannot restore the database from "${dumpPath}": ${errText(e)}`,
      ExitCode.Stack,
      "Nothing was changed.",
    );
  }
  const filter = new DumpFilter({ keepOwners: o.keepOwners });
  const hash = createSha256();
  const enc = new TextEncoder();
  const chunkSize = o.chunkSize ?? 1024 * 1024;
  let bytes = 0;
  let sha256 = "";
  /** Why the transaction must not commit (set once the end is reached or on a refusal). */
  let verdict: { commit: boolean; why?: string } | undefined;
  let fileClosed = false;
  const closeFile = () => {
    if (!fileClosed) file.close();
    fileClosed = true;
  };
  const finish = (c: ReadableStreamDefaultController<Uint8Array>) => {
    closeFile();
    for (const b of filter.end()) c.enqueue(b);
    sha256 = hash.hex();
    if (filter.refusal) {
      verdict = {
        commit: false,
        why: `line ${filter.refusal.line} of the dump: ${filter.refusal.reason}`,
      };
    } else if (!filter.complete) {
      verdict = {
        commit: false,
        why: filter.stats.endedInCopy
          ? `the dump ends inside table data (line ${filter.stats.lines}): it is truncated`
          : `the dump has no "${DUMP_COMPLETE_LINE}" line: it is truncated or not a pg_dump`,
      };
    } else if (o.expectSha256 && o.expectSha256.toLowerCase() !== sha256) {
      verdict = {
        commit: false,
        why: `its sha256 is ${sha256.slice(0, 12)}…, expected ${o.expectSha256.slice(0, 12)}…`,
      };
    } else {
      verdict = { commit: true };
    }
    // Inside unfinished COPY data, end it first so psql reads the ROLLBACK as a command.
    if (filter.stats.endedInCopy) c.enqueue(enc.encode("\n\\.\n"));
    c.enqueue(
      enc.encode(
        verdict.commit ? `${markerSql(sha256)}COMMIT;\n\\echo ${COMMITTED}\n` : "ROLLBACK;\n",
      ),
    );
    c.close();
  };
  const source = new ReadableStream<Uint8Array>({
    start(c) {
      c.enqueue(enc.encode(prelude(o.lockTimeoutMs ?? 30_000)));
    },
    async pull(c) {
      // Read until something can be handed on: a pull that enqueues nothing is not called again.
      while (true) {
        const buf = new Uint8Array(chunkSize);
        const n = await file.read(buf);
        if (n === null) return finish(c);
        const chunk = buf.subarray(0, n);
        hash.update(chunk);
        bytes += n;
        o.onBytes?.(bytes);
        const out = filter.push(chunk);
        for (const b of out) c.enqueue(b);
        if (filter.refusal) return finish(c);
        if (out.length > 0) return;
      }
    },
    cancel() {
      closeFile();
    },
  });
  let r: RunResult;
  try {
    r = await docker.run(
      [...execArgs(t, true), ...psqlArgs(t), "-q", "-o", "/dev/null", "-f", "-"],
      { stdin: source, env: secretEnv(t), signal: o.signal },
    );
  } catch (e) {
    closeFile();
    if (o.signal?.aborted) throw interrupted();
    throw dbError(
      `Cannot restore the database "${t.database}" from "${dumpPath}": ${errText(e)}; ` +
        "the restore was not committed, the database is as it was before",
      ExitCode.Stack,
    );
  } finally {
    closeFile();
  }
  if (o.signal?.aborted && !r.stdout.includes(COMMITTED)) throw interrupted();
  const where = `the database "${t.database}" was left as it was before the restore`;
  // A file found incomplete, refused or not the expected one was never committed (ROLLBACK was
  // sent); psql may have failed on its cut end too, which is a consequence, not the cause.
  if (verdict && !verdict.commit) {
    throw dbError(
      `Cannot restore the database "${t.database}" from "${dumpPath}": ${verdict.why}; ${where}`,
      ExitCode.Integrity,
      "Use a complete dump (re-copy it from the transfer media, or pick another backup).",
      r.code !== 0 ? r.stderr : undefined,
    );
  }
  if (r.code !== 0) {
    throw dbError(
      `Cannot restore the database "${t.database}" from "${dumpPath}": ${
        psqlError(r.stderr)
      }; ${where}`,
      ExitCode.Stack,
      "Is the gateway stopped (it holds locks)? Is the dump for this PostgreSQL version? The file is untouched.",
      r.stderr,
    );
  }
  if (!r.stdout.includes(COMMITTED)) {
    throw dbError(
      `Cannot restore the database "${t.database}" from "${dumpPath}": psql ended before the restore was committed; ${where}`,
      ExitCode.Stack,
      undefined,
      r.stderr,
    );
  }
  return {
    bytes,
    sha256,
    stripped: {
      restrict: filter.stats.restrictLines,
      pgDumpMessages: filter.stats.pgDumpMessages,
      owner: filter.stats.ownerLines,
    },
    durationMs: performance.now() - t0,
  };
}

function interrupted(): InterruptedError {
  return new InterruptedError(
    "Interrupted during the database restore (it runs in one transaction: unless psql had already committed, the database is as it was)",
  );
}

/**
 * psql's first ERROR line, with its input line turned into the dump's line (psql's line 1 is the
 * prelude).
 */
export function psqlError(stderr: string): string {
  const line = stderr.split("\n").find((l) => /ERROR:/.test(l)) ?? lastLines(stderr, 1);
  const m = line.match(/^psql:<stdin>:(\d+): (.*)$/);
  if (m) return `line ${Number(m[1]) - 1} of the dump: ${m[2].trim()}`;
  return line.trim() || "psql failed";
}

/** A backup file found in the backup dir. */
export interface BackupFile {
  file: string;
  path: string;
  /** The UTC stamp in its name (sorts by time). */
  stamp: string;
}

/** The backups in `dir`, newest first (by the stamp in the name, then the name). */
export async function listBackups(dir: string): Promise<BackupFile[]> {
  const out: BackupFile[] = [];
  try {
    for await (const e of Deno.readDir(dir)) {
      const m = e.isFile ? e.name.match(BACKUP_RE) : null;
      if (m) out.push({ file: e.name, path: `${dir}/${e.name}`, stamp: m[1] });
    }
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
  return out.sort((a, b) =>
    a.stamp === b.stamp ? b.file.localeCompare(a.file) : b.stamp.localeCompare(a.stamp)
  );
}

/**
 * Which backups to keep: the `keep` newest, plus every protected file name (the one the current
 * rollback target needs), whatever its age. Pure; `backups` newest first.
 */
export function planRetention<T extends { file: string }>(
  backups: T[],
  keep: number,
  protect: Iterable<string> = [],
): { keep: T[]; remove: T[] } {
  const prot = new Set(protect);
  const kept: T[] = [];
  const remove: T[] = [];
  backups.forEach((b, i) => (i < keep || prot.has(b.file) ? kept : remove).push(b));
  return { keep: kept, remove };
}

/**
 * Applies `planRetention` in `dir`: removes old backups (and their `.sha256`) and left-over
 * `.partial` files of crashed backups (call it while holding the state lock, so no backup is being
 * written). Returns the names removed.
 */
export async function pruneBackups(
  dir: string,
  keep: number,
  protect: Iterable<string> = [],
): Promise<string[]> {
  const { remove } = planRetention(await listBackups(dir), keep, protect);
  const removed: string[] = [];
  for (const b of remove) {
    await Deno.remove(b.path);
    await Deno.remove(`${b.path}.sha256`).catch(() => {});
    removed.push(b.file);
  }
  for await (const e of Deno.readDir(dir)) {
    if (e.isFile && e.name.startsWith("cortex-db-") && e.name.endsWith(PARTIAL_SUFFIX)) {
      await Deno.remove(`${dir}/${e.name}`).catch(() => {});
      removed.push(e.name);
    }
  }
  if (removed.length) await syncDir(dir);
  return removed;
}
