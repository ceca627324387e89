/**
 * One run at a time per state dir.
 *
 * The lock is an exclusive `flock(2)` on `<stateDir>/lock`, taken with `Deno.FsFile#tryLock`
 * (non-blocking). The kernel drops a flock when the last descriptor of the open file goes away,
 * so a run killed with SIGKILL (or a crashed host) never leaves a stale lock, and Deno opens
 * files close-on-exec, so child processes (docker, compose) do not inherit it. The holder writes
 * its PID into the file after locking, so a refused run can say who holds it. The file itself is
 * never deleted: deleting a flock file lets two runs lock two different inodes.
 */
import { preflightError } from "../errors.ts";
import { STATE_LOCK } from "../layout.ts";
import { writeAll } from "../fsutil.ts";

/** A held lock. */
export interface StateLock {
  path: string;
  pid: number;
  /** Releases the lock (idempotent). Process exit releases it too. */
  release(): void;
  [Symbol.dispose](): void;
}

/** The lock file's path in a state dir. */
export function lockPath(stateDir: string): string {
  return `${stateDir.replace(/\/+$/, "")}/${STATE_LOCK}`;
}

/** Reads the PID the holder wrote; retries briefly, since it writes it just after locking. */
async function readHolder(path: string): Promise<number | undefined> {
  for (let i = 0; i < 10; i++) {
    try {
      const pid = parseInt((await Deno.readTextFile(path)).trim(), 10);
      if (pid > 0) return pid;
    } catch {
      // unreadable: fall through to the retry
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return undefined;
}

/**
 * Takes the state dir's lock, creating the dir (0700) when needed, or fails at once with a
 * preflight error naming the PID of the run that holds it.
 */
export async function acquireLock(stateDir: string, pid: number = Deno.pid): Promise<StateLock> {
  await Deno.mkdir(stateDir, { recursive: true, mode: 0o700 });
  const path = lockPath(stateDir);
  // No truncate on open: the file holds the current holder's PID until we own the lock.
  const file = await Deno.open(path, { read: true, write: true, create: true, mode: 0o600 });
  let locked: boolean;
  try {
    locked = await file.tryLock(true);
  } catch (e) {
    file.close();
    throw preflightError(
      "state",
      `Cannot lock the state dir "${stateDir}": ${(e as Error).message}`,
      "The state dir must be on a local filesystem that supports flock; pass --state-dir.",
    );
  }
  if (!locked) {
    file.close();
    const holder = await readHolder(path);
    const who = holder ? `PID ${holder}` : "a process whose PID is unknown";
    throw preflightError(
      "state",
      `Cannot start: another cortex-install run (${who}) is using the state dir "${stateDir}"`,
      holder
        ? `Wait for it to finish, or stop it (kill ${holder}); the lock goes away when it exits.`
        : "Wait for it to finish; the lock goes away when it exits.",
    );
  }
  await file.truncate(0);
  await writeAll(file, new TextEncoder().encode(`${pid}\n`));
  let held = true;
  const release = () => {
    if (!held) return;
    held = false;
    try {
      file.truncateSync(0);
      file.unlockSync();
    } finally {
      file.close();
    }
  };
  return { path, pid, release, [Symbol.dispose]: release };
}
