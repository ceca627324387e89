/** `status` and `rollback`: what the journal says, and going back to the previous release. */
import { $ } from "dax";
import type { Context } from "../context.ts";
import { ExitCode, preflightError, UsageError } from "../errors.ts";
import { DEFAULT_STATE_DIR } from "../layout.ts";
import {
  currentRelease,
  lastDbEvent,
  previousRelease,
  readJournal,
  recordDbEvent,
  writeJournal,
} from "../state/journal.ts";
import { acquireLock } from "../state/lock.ts";
import { auditRun } from "../state/audit.ts";
import { stackStatus } from "../host/stack.ts";
import { loadReleaseManifest } from "../bundle/release.ts";
import { engineImages, recordedImages } from "../images/load.ts";
import { backupFor, rollbackTo } from "../host/rollback.ts";
import { backupsDir, pruneAfterRun } from "../host/database.ts";
import { listBackups } from "../host/db.ts";
import { formatBytes } from "../progress.ts";
import { absPath } from "./paths.ts";
import { parseKeepBackups, parseWaitTimeout } from "./install.ts";
import type { CommandHandler } from "./handler.ts";
import type { DbEvent } from "../state/journal.ts";
import { str } from "./flags.ts";

/** The status report (also used by tests). */
export async function statusReport(ctx: Context, stateDir: string) {
  const j = await readJournal(stateDir);
  const cur = currentRelease(j);
  const images = recordedImages(cur?.images ?? {}, await engineImages(ctx));
  const models = await Promise.all(
    Object.entries(j.models).map(async ([target, m]) => {
      let present = true;
      try {
        await Deno.stat(target);
      } catch {
        present = false;
      }
      return { target, files: m.files, bytes: m.bytes, present };
    }),
  );
  const project = cur?.stack?.project;
  const stack = project ? await stackStatus(ctx, { project }) : undefined;
  const prev = previousRelease(j);
  const files = await listBackups(backupsDir(stateDir)).catch(() => []);
  const backups = await Promise.all(files.map(async (b) => ({
    path: b.path,
    bytes: (await Deno.stat(b.path).catch(() => undefined))?.size ?? 0,
  })));
  return {
    command: "status",
    stateDir,
    installed: cur
      ? {
        release: cur.release,
        installedAt: cur.installedAt,
        bundleDigest: cur.bundleDigest,
        bundleDir: cur.bundleDir,
        engineRefs: cur.engineRefs,
      }
      : null,
    previous: prev?.release.release ?? null,
    database: {
      backupsDir: backupsDir(stateDir),
      backups,
      /** What `rollback` would restore (taken before the installed release was installed). */
      rollbackBackup: cur && prev ? backupFor(cur, prev.release) ?? null : null,
      lastBackup: lastDbEvent(j, "backup") ?? null,
      lastRestore: lastDbEvent(j, "restore") ?? null,
    },
    history: j.releases.map((r) => ({
      release: r.release,
      installedAt: r.installedAt,
      outcome: r.outcome,
    })),
    images,
    models,
    services: stack?.services ?? [],
    healthy: stack?.healthy ?? false,
    interruptedRun: j.inProgress ?? null,
    lastRun: j.lastRun ?? null,
  };
}

export const statusCommand: CommandHandler = async (ctx, f) => {
  const stateDir = absPath(ctx, str(f["state-dir"]) ?? DEFAULT_STATE_DIR);
  const r = await statusReport(ctx, stateDir);
  const l: string[] = [];
  if (!r.installed) {
    l.push(`Nothing installed (state dir ${stateDir}).`);
  } else {
    l.push(`Cortex ${r.installed.release}, installed ${r.installed.installedAt}`);
    l.push(`  bundle: ${r.installed.bundleDir} (${r.installed.bundleDigest})`);
    if (r.previous) l.push(`  previous release: ${r.previous} (cortex-install rollback)`);
    for (const i of r.images) l.push(`  image ${i.state.padEnd(8)} ${i.ref}`);
    for (const m of r.models) l.push(`  model ${m.present ? "present " : "MISSING "} ${m.target}`);
    for (const s of r.services) l.push(`  service ${s.name}: ${s.health ?? s.state}`);
    const d = r.database;
    if (r.previous) {
      l.push(
        d.rollbackBackup
          ? `  rollback restores the database from ${d.rollbackBackup.path} (${d.rollbackBackup.reason})`
          : "  rollback does not restore the database (no backup was taken before this release)",
      );
    }
    if (d.lastBackup) {
      l.push(
        `  last database backup: ${d.lastBackup.path} (${
          formatBytes(d.lastBackup.bytes)
        }, ${d.lastBackup.reason}, ${d.lastBackup.at})`,
      );
    }
    if (d.lastRestore) {
      l.push(
        `  last database restore: from ${d.lastRestore.path} (${d.lastRestore.reason}, ${d.lastRestore.at})`,
      );
    }
    l.push(`  database backups: ${d.backups.length} in ${d.backupsDir}`);
    l.push(
      `  stack: ${
        r.services.length === 0
          ? "not running (no containers; `cortex-install` starts it again)"
          : r.healthy
          ? "healthy"
          : "NOT healthy"
      }`,
    );
  }
  if (r.interruptedRun) {
    l.push(`  an interrupted run (${r.interruptedRun.startedAt}) will resume on the next install`);
  }
  if (r.lastRun) {
    l.push(
      `  last run: ${r.lastRun.command} ${r.lastRun.outcome} (exit ${r.lastRun.exitCode}) at ${r.lastRun.finishedAt}`,
    );
  }
  return { exitCode: ExitCode.Ok, report: r, human: l.join("\n") };
};

export const rollbackCommand: CommandHandler = async (ctx, f) => {
  const stateDir = absPath(ctx, str(f["state-dir"]) ?? DEFAULT_STATE_DIR);
  const waitTimeoutSec = parseWaitTimeout(str(f["wait-timeout"]));
  const keepBackups = parseKeepBackups(str(f["keep-backups"]));
  const skipDb = f["skip-db"] === true;
  const t0 = performance.now();
  const lock = await acquireLock(stateDir);
  try {
    const j = await readJournal(stateDir);
    const cur = currentRelease(j);
    const prev = previousRelease(j);
    if (!cur || j.current === undefined || !prev) {
      throw preflightError(
        "rollback",
        "Cannot roll back: the journal records no previous release",
        `State dir: ${stateDir}. Run \`cortex-install status\`.`,
      );
    }
    if (f.yes !== true) {
      if (!ctx.interactive) {
        throw new UsageError(
          "Confirmation needed, but stdin is not a terminal",
          "Pass --yes to roll back unattended.",
        );
      }
      const b = skipDb ? undefined : backupFor(cur, prev.release);
      const ok = await $.confirm({
        message: `Roll back from Cortex ${cur.release} to ${prev.release.release}${
          b
            ? ` and restore its database from ${b.path} (taken ${b.takenAt}; what was written since is backed up first, then replaced)`
            : ""
        }?`,
        default: false,
        noClear: true,
      });
      if (!ok) {
        return {
          exitCode: ExitCode.Interrupted,
          report: { command: "rollback", ok: false },
          human: "Cancelled.",
        };
      }
    }
    const release = await loadReleaseManifest();
    const stack = cur.stack;
    if (!stack) {
      throw preflightError(
        "rollback",
        "Cannot roll back: the journal does not say how the stack was run",
      );
    }
    const audit = (outcome: "ok" | "failed", exitCode: number, error?: string) =>
      auditRun(ctx, stateDir, {
        command: ["cortex-install", ...Deno.args],
        bundleDigest: prev.release.bundleDigest,
        release: prev.release.release,
        artifacts: [],
        database: events,
        outcome,
        exitCode,
        durationMs: Math.round(performance.now() - t0),
        ...(error ? { error } : {}),
      });
    const events: DbEvent[] = [];
    let r;
    try {
      r = await rollbackTo(ctx, j, {
        waitTimeoutSec,
        // A release recorded without its readiness URLs gets the embedded manifest's.
        stack: { ...stack, readiness: release.readiness },
        from: j.current,
        to: prev.index,
        database: skipDb ? { skip: true } : { backupFirst: { stateDir } },
      });
    } catch (e) {
      // What was done to the database (a backup first) is recorded even when the rollback failed.
      const partial = (e as { dbEvents?: DbEvent[] }).dbEvents ?? [];
      for (const ev of partial) recordDbEvent(j, ev);
      events.push(...partial);
      await writeJournal(stateDir, j).catch(() => {});
      await audit("failed", (e as { exitCode?: number }).exitCode ?? 1, (e as Error).message)
        .catch(() => {});
      throw e;
    }
    for (const ev of r.database.events) recordDbEvent(j, ev);
    events.push(...r.database.events);
    await writeJournal(stateDir, j);
    const pruned = await pruneAfterRun(ctx, stateDir, keepBackups, previousRelease(j)?.release);
    await audit("ok", 0);
    const dbLine = r.database.restored
      ? ` Database restored from ${r.database.restored.path} (taken ${r.database.restored.takenAt})${
        r.database.backupFirst
          ? `; the replaced database was backed up to ${r.database.backupFirst.path}`
          : ""
      }.`
      : ` Database not restored: ${r.database.skipped}.`;
    return {
      exitCode: ExitCode.Ok,
      report: { command: "rollback", ok: true, ...r, database: { ...r.database, pruned } },
      human:
        `Rolled back from Cortex ${r.from} to ${r.to}; restored ${r.restored.length} file(s), ${r.retagged.length} image tag(s); stack healthy.${dbLine}`,
    };
  } finally {
    lock.release();
  }
};
