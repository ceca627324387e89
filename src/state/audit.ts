/**
 * The audit log: an append-only record of every run in the state dir (`audit.log`), one JSON
 * object per line. Each line goes out in one `write` on a file opened with O_APPEND, then is
 * fsynced; the file is never rewritten. A crash mid-write can leave a partial last line:
 * readAudit skips it, and the next append starts on a fresh line so it is not glued to it.
 */
import { z } from "zod";
import type { Context } from "../context.ts";
import { AUDIT_LOG } from "../layout.ts";
import { redactArgs } from "../cli/flags.ts";
import { writeAll } from "../fsutil.ts";
import { DbEventSchema } from "./journal.ts";

/** What was found for one artifact (a bundle file or an image). */
export const VerdictSchema = z.object({
  /** Bundle-relative path, or an image ref. */
  path: z.string(),
  verdict: z.enum([
    "ok",
    "cached",
    "skipped",
    "mismatch",
    "missing",
    "unreadable",
    "unlisted",
    "failed",
    "conflict",
    "unsafe",
  ]),
  sha256: z.string().optional(),
  detail: z.string().optional(),
});
export type Verdict = z.infer<typeof VerdictSchema>;

/** One line of the audit log. */
export const AuditEntrySchema = z.object({
  /** ISO time the run ended. */
  time: z.string(),
  /** The user who ran it (SUDO_USER's name is kept apart in sudoUser). */
  user: z.string(),
  sudoUser: z.string().optional(),
  pid: z.number().int().optional(),
  /** The command line, secrets redacted. */
  command: z.array(z.string()),
  bundleDigest: z.string().optional(),
  release: z.string().optional(),
  artifacts: z.array(VerdictSchema).default([]),
  /** Database backups taken and dumps restored by the run (file, size, SHA-256). */
  database: z.array(DbEventSchema).optional(),
  outcome: z.enum(["ok", "failed", "interrupted"]),
  exitCode: z.number().int().optional(),
  durationMs: z.number().nonnegative(),
  /** The error message of a failed run (no secrets: messages never hold values). */
  error: z.string().optional(),
});
export type AuditEntry = z.infer<typeof AuditEntrySchema>;
/** An entry as given to appendAudit: the command line is redacted there. */
export type AuditInput = z.input<typeof AuditEntrySchema>;

/** The audit log's path in a state dir. */
export function auditPath(stateDir: string): string {
  return `${stateDir.replace(/\/+$/, "")}/${AUDIT_LOG}`;
}

/**
 * The user running the program: `USER` (or `LOGNAME`, else `id -un`), plus `SUDO_USER` when
 * run through sudo. `env` is the context's environment lookup.
 */
export async function currentUser(
  env: (key: string) => string | undefined,
): Promise<{ user: string; sudoUser?: string }> {
  let user = env("USER") || env("LOGNAME");
  if (!user) {
    try {
      const out = await new Deno.Command("id", { args: ["-un"], stdout: "piped", stderr: "null" })
        .output();
      user = out.code === 0 ? new TextDecoder().decode(out.stdout).trim() : undefined;
    } catch {
      user = undefined;
    }
  }
  const sudoUser = env("SUDO_USER") || undefined;
  return { user: user || `uid ${Deno.uid() ?? "?"}`, ...(sudoUser ? { sudoUser } : {}) };
}

/** Serialises an entry to one line; the command line is redacted here, whatever the caller did. */
export function auditLine(entry: AuditInput): string {
  const e = AuditEntrySchema.parse({ ...entry, command: redactArgs(entry.command) });
  return JSON.stringify(e) + "\n";
}

/**
 * Appends one entry to the audit log (creating the state dir 0700 and the log 0600): one write
 * with O_APPEND, then fsync. Returns the line written.
 */
export async function appendAudit(stateDir: string, entry: AuditInput): Promise<string> {
  await Deno.mkdir(stateDir, { recursive: true, mode: 0o700 });
  let line = auditLine(entry);
  const path = auditPath(stateDir);
  const f = await Deno.open(path, { append: true, create: true, read: true, mode: 0o600 });
  try {
    // A crash mid-write may have left a last line without its newline: start a fresh line.
    const { size } = await f.stat();
    if (size > 0) {
      const last = new Uint8Array(1);
      await f.seek(size - 1, Deno.SeekMode.Start);
      await f.read(last);
      if (last[0] !== 0x0a) line = "\n" + line;
    }
    const bytes = new TextEncoder().encode(line);
    // O_APPEND: every write goes to the end, whatever the position the read left.
    await writeAll(f, bytes);
    await f.syncData();
  } finally {
    f.close();
  }
  return line;
}

/** What a command tells about its run; auditRun adds who ran it, when, and the process. */
export type RunRecord = Omit<AuditInput, "time" | "user" | "sudoUser" | "pid">;

/**
 * Appends the record of one run to the state dir's audit log: who ran it (USER, SUDO_USER from
 * the context's environment), when (`time`, default the context's clock), the PID, the command
 * line (redacted) and the outcome. The one place where commands audit their runs.
 */
export async function auditRun(
  ctx: Pick<Context, "env" | "now">,
  stateDir: string,
  r: RunRecord,
  time: Date = ctx.now(),
): Promise<string> {
  const who = await currentUser((k) => ctx.env(k));
  return await appendAudit(stateDir, {
    time: time.toISOString(),
    user: who.user,
    sudoUser: who.sudoUser,
    pid: Deno.pid,
    ...r,
  });
}

/**
 * Reads the audit log: the good entries, oldest first, and the number of lines that are not
 * valid entries (a partial last line after a crash, or damage). A missing log reads as empty.
 */
export async function readAudit(
  stateDir: string,
): Promise<{ entries: AuditEntry[]; badLines: number }> {
  let text: string;
  try {
    text = await Deno.readTextFile(auditPath(stateDir));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return { entries: [], badLines: 0 };
    throw e;
  }
  const entries: AuditEntry[] = [];
  let badLines = 0;
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    try {
      const r = AuditEntrySchema.safeParse(JSON.parse(line));
      if (r.success) entries.push(r.data);
      else badLines++;
    } catch {
      badLines++;
    }
  }
  return { entries, badLines };
}
