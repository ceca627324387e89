/**
 * Atomic file replacement, the one writer of the project's files (env files, the override, the
 * state journal): write a temp file beside the target, fsync, chmod, rename over the target,
 * fsync the directory. A reader sees the old file or the new one, never half of one; a crash
 * before the rename leaves the original untouched.
 */
import { InstallError, InterruptedError, partialError, type Step } from "../errors.ts";
import { fsyncDir, writeAll } from "../fsutil.ts";

export interface WriteAtomicOptions {
  /** File mode of the new file (default 0o600: env files hold secrets). */
  mode?: number;
  /** Copy the previous file to `<path>.bak-<YYYYMMDDTHHMMSSZ>` before replacing it. */
  backup?: boolean;
  /** Clock for the backup name. */
  now?: Date;
  /** Test hook, called after the temp file is written and synced, before the rename. */
  beforeRename?: (tmpPath: string) => void | Promise<void>;
  /**
   * The temp file is `.<name>.tmp`, fixed per target, overwritten by the next write: for a
   * writer that holds a lock (the journal), so that a crash leaves at most one leftover. Default:
   * a fresh `<name>.tmp-<pid>-<random>` per write.
   */
  fixedTemp?: boolean;
  /** The step named in the error (default "settings"). */
  step?: Step;
}

export interface WriteAtomicResult {
  /** False when the file already had exactly this content (nothing was written). */
  changed: boolean;
  /** Path of the backup of the previous content, when one was made. */
  backup?: string;
}

/** `20260118T120000Z` for a date (UTC). */
export function backupStamp(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, "Z").replace(/[-:]/g, "");
}

function dirname(path: string): string {
  const i = path.lastIndexOf("/");
  if (i < 0) return ".";
  return i === 0 ? "/" : path.slice(0, i);
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

async function readIfExists(path: string): Promise<Uint8Array | undefined> {
  try {
    return await Deno.readFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

/**
 * Writes `data` to a new file that must not exist yet (never overwrites; with `truncate`, a
 * leftover of a crashed writer is overwritten), synced.
 */
async function writeNew(
  path: string,
  data: Uint8Array,
  mode: number,
  truncate = false,
): Promise<void> {
  const f = await Deno.open(
    path,
    truncate
      ? { write: true, create: true, truncate: true, mode }
      : { write: true, createNew: true, mode },
  );
  try {
    await writeAll(f, data);
    await f.sync();
  } finally {
    f.close();
  }
  await Deno.chmod(path, mode);
}

/** Copies `old` to a fresh `<path>.bak-<stamp>[-N]`; an existing backup is never overwritten. */
async function writeBackup(path: string, old: Uint8Array, now: Date): Promise<string> {
  const base = `${path}.bak-${backupStamp(now)}`;
  for (let n = 0;; n++) {
    const name = n === 0 ? base : `${base}-${n}`;
    try {
      await writeNew(name, old, 0o600);
      return name;
    } catch (e) {
      if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
    }
  }
}

// Some filesystems refuse fsync on a directory; the rename itself is still atomic.
const syncDir = (dir: string) => fsyncDir(dir).catch(() => {});

/**
 * Replaces `path` with `data` atomically. Writes nothing when the content is already `data`
 * (`changed: false`, no backup). Otherwise creates parent dirs, optionally backs up the old file,
 * writes `path.tmp-<pid>-<rand>`, fsyncs, chmods, renames it over `path` and fsyncs the directory.
 * On any error the temp file is removed (a fixed one is left for the next write), the original is
 * untouched, and an InstallError is thrown (exit 7: the run had started changing the host).
 */
export async function writeFileAtomic(
  path: string,
  data: string | Uint8Array,
  opts: WriteAtomicOptions = {},
): Promise<WriteAtomicResult> {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  const mode = opts.mode ?? 0o600;
  const dir = dirname(path);
  let tmp: string | undefined;
  try {
    const old = await readIfExists(path);
    if (old && bytesEqual(old, bytes)) return { changed: false };
    await Deno.mkdir(dir, { recursive: true });
    let backup: string | undefined;
    if (old && opts.backup) backup = await writeBackup(path, old, opts.now ?? new Date());
    const rand = crypto.getRandomValues(new Uint32Array(1))[0].toString(16);
    const name = path.slice(path.lastIndexOf("/") + 1);
    tmp = opts.fixedTemp ? `${dir}/.${name}.tmp` : `${path}.tmp-${Deno.pid}-${rand}`;
    await writeNew(tmp, bytes, mode, opts.fixedTemp);
    await opts.beforeRename?.(tmp);
    await Deno.rename(tmp, path);
    tmp = undefined;
    await syncDir(dir);
    return backup ? { changed: true, backup } : { changed: true };
  } catch (e) {
    if (tmp && !opts.fixedTemp) await Deno.remove(tmp).catch(() => {});
    if (e instanceof InstallError || e instanceof InterruptedError) throw e;
    // Every write is a change of the host: exit 7, never "nothing was changed".
    throw partialError(
      opts.step ?? "settings",
      `Cannot write "${path}": ${(e as Error).message}`,
      "Check that the directory exists, is writable by this user and has free space.",
    );
  }
}
