/**
 * The runner of `install`'s steps: the ordered list (INSTALL_STEPS) and the one place that does
 * the bookkeeping around them: the journal (the run begins, each step running then done, the
 * release recorded at the end; written after each), durations, the exit code of a failure once
 * the host was changed, and the rollback when the stack of an upgrade does not become healthy.
 *
 * Adding a step is one file exporting an `InstallStep` and one line in INSTALL_STEPS.
 */
import { ExitCode, InstallError, stackError, type Step, throwIfAborted } from "../errors.ts";
import { engineImages } from "../images/load.ts";
import { canonicalRef } from "../host/compose.ts";
import { rollbackTo } from "../host/rollback.ts";
import { sha256OfFile } from "../hash.ts";
import { overridePath } from "../layout.ts";
import {
  beginRun,
  type Journal,
  recordDbEvent,
  recordRelease,
  recordStep,
  type Release,
  writeJournal,
} from "../state/journal.ts";
import { installInputs } from "./rerun.ts";
import { saveStackFiles } from "../host/upgrade01.ts";
import type { InstallRun, InstallStep } from "./types.ts";
import { verifyFilesStep } from "./verify_files.ts";
import { loadStep } from "./load_images.ts";
import { retagStep } from "./retag.ts";
import { modelsStep } from "./models.ts";
import { settingsStep } from "./settings.ts";
import { stackStep } from "./stack.ts";
import { wheelsStep } from "./wheels.ts";
import { backupDbStep } from "./backup_db.ts";
import { restoreDbStep } from "./restore_db.ts";
import { registerModelsStep } from "./register_models.ts";

/**
 * The steps of `install` after the preflight, in order. `backup` comes first of the steps that
 * change the host (a failed backup stops the upgrade with nothing changed: see backup_db.ts).
 * Models come before the images: every model file is verified while it is copied into staging,
 * so a damaged one stops the run before any image is loaded or any setting written (images
 * cannot be staged that way: `docker load` is the write). `database` comes after `settings` and
 * before `stack`, so the bundle's dump is in before the gateway's first start (restore_db.ts).
 * `register` comes last: Cortex's API needs the healthy stack, and its failure rolls nothing back.
 */
export const INSTALL_STEPS: readonly InstallStep[] = [
  verifyFilesStep,
  backupDbStep,
  modelsStep,
  loadStep,
  retagStep,
  wheelsStep,
  settingsStep,
  restoreDbStep,
  stackStep,
  registerModelsStep,
];

/**
 * Runs the steps in order (each when its `when` allows), then records the release as installed.
 * Throws the failing step's error: with exit 7 instead of 3 once a step that changes the host
 * has started; during an upgrade, a stack failure first rolls the host back (exit 6 either way).
 */
export async function runSteps(
  run: InstallRun,
  steps: readonly InstallStep[] = INSTALL_STEPS,
): Promise<void> {
  const { ctx, options: o, journal, report } = run;
  const save = () => writeJournal(o.stateDir, journal);
  beginRun(journal, run.prepared.digest, Deno.pid, ctx.now());
  // An upgrade without a backup (--skip-db): the installed release's recorded backup is older than
  // its database now, and a rollback must not bring that older state back.
  if (run.previous?.dbBackup && !run.prepared.database.backup) {
    ctx.log.warn(
      `No database backup for this upgrade: a rollback to ${run.previous.release} will not restore the database`,
    );
    delete run.previous.dbBackup;
  }
  await save();
  let hostChanged = false;
  let stackDone = false;
  for (const step of steps) {
    // An interrupt that came while a step that does not watch the signal ran (settings: a few
    // atomic writes) stops the run here, before the next step begins.
    throwIfAborted(ctx.signal);
    if (step.when && !step.when(run)) continue;
    recordStep(journal, step.name, "running");
    await save();
    hostChanged ||= step.changesHost;
    const t0 = performance.now();
    try {
      const result = await step.run(run);
      Object.assign(report, result.report);
    } catch (e) {
      if (stackDone) {
        // A step after a healthy stack (register) failed: the release is installed and runs;
        // record it so (the run stays unfinished, and the next one does the rest).
        recordInstalled(journal, await releaseRecord(run, "installed"));
        await save();
        throw e;
      }
      if (run.previous && e instanceof InstallError && e.exitCode === ExitCode.Stack) {
        await rollBack(run, e);
      }
      const err = ctx.signal.aborted ? e : fromOsError(step.name, e, hostChanged);
      throw hostChanged ? afterHostChanged(err) : err;
    } finally {
      report.durations[step.name] = Math.round(performance.now() - t0);
    }
    recordStep(journal, step.name, "done");
    await save();
    stackDone ||= step.name === "stack";
  }
  recordInstalled(journal, await releaseRecord(run, "installed"));
  await save();
}

/** The least time an automatic rollback waits for the release it returns to. */
export const ROLLBACK_MIN_WAIT_SEC = 120;

/**
 * Records the release as installed. A run of the bundle already current (a re-run, or the end
 * of a run whose `register` failed after the release was recorded) updates that record instead of
 * adding a second one (a rollback must go to the release before it, not to itself), keeping the
 * env-file backups of the first run: what a rollback restores is the content before the release
 * was first installed.
 */
export function recordInstalled(journal: Journal, rel: Release): number {
  const idx = journal.current;
  const cur = idx === undefined ? undefined : journal.releases[idx];
  if (!cur || cur.bundleDigest !== rel.bundleDigest || cur.outcome !== "installed") {
    return recordRelease(journal, rel);
  }
  const envFiles: Release["envFiles"] = {};
  for (const [path, f] of Object.entries(rel.envFiles)) {
    const backup = cur.envFiles[path]?.backup ?? f.backup;
    envFiles[path] = { ...f, ...(backup ? { backup } : {}) };
  }
  journal.releases[idx!] = {
    ...rel,
    envFiles,
    ...(cur.dbBackup ? { dbBackup: cur.dbBackup } : {}),
  };
  return idx!;
}

/** What to do about an error of the operating system, by its code. */
const OS_HINTS: Record<string, string> = {
  ENOSPC: "The filesystem is full: free space on it",
  EDQUOT: "The disk quota is used up: free space",
  EROFS: "The filesystem is read-only: mount it read-write or pick another folder",
  EACCES: "Permission denied: run as a user who may read and write there, or fix the owner or mode",
  EPERM: "Operation not permitted: run as a user who may read and write there",
  EIO: "The disk reported an I/O error: check it (dmesg)",
};

/**
 * An error of the operating system raised by a step (a write refused: disk full, read-only,
 * permission) is no bug: it becomes an InstallError of that step saying what to do, exit 7
 * once the host was changed (3 before). Other errors are returned as they are.
 */
export function fromOsError(step: string, e: unknown, hostChanged: boolean): unknown {
  const code = (e as { code?: unknown })?.code;
  if (!(e instanceof Error) || e instanceof InstallError || typeof code !== "string") return e;
  if (!/^E[A-Z0-9]+$/.test(code)) return e;
  const what = OS_HINTS[code] ?? `The system refused it (${code})`;
  return new InstallError(
    step as Step,
    `Cannot finish the ${step} step: ${e.message}`,
    hostChanged ? ExitCode.Partial : ExitCode.Preflight,
    `${what}, then run the same command again to resume (what was done is in the journal: ` +
      "`cortex-install status`).",
  );
}

/**
 * Exit 3 promises that nothing was changed: a preflight-kind error raised after the host was
 * changed (a file that changed under us, an unreadable file) exits 7 instead.
 */
function afterHostChanged(e: unknown): unknown {
  if (!(e instanceof InstallError) || e.exitCode !== ExitCode.Preflight) return e;
  return new InstallError(
    e.step,
    e.message,
    ExitCode.Partial,
    e.hint ?? "What was done is in the journal (`cortex-install status`); fix the cause and " +
        "run the same command again to resume.",
    e.detail,
  );
}

/** The release this run installs (or failed to), for the journal: what a rollback restores. */
async function releaseRecord(run: InstallRun, outcome: Release["outcome"]): Promise<Release> {
  const { ctx, options: o, prepared: p, report } = run;
  const envFiles: Release["envFiles"] = {};
  for (const f of report.settings?.files ?? []) {
    const sha = await sha256OfFile(f.path);
    const prevBackup = run.previous?.envFiles[f.path]?.backup;
    if (sha) {
      envFiles[f.path] = { sha256: sha, backup: f.backup ?? (f.changed ? undefined : prevBackup) };
    }
  }
  // Images of the release, by ref, for rollback and the re-run check.
  const engine = await engineImages(ctx);
  const images: Record<string, string> = {};
  for (const i of p.plan.images) {
    for (const r of i.refs) {
      const id = engine.get(canonicalRef(r));
      if (id) images[r] = id;
    }
  }
  for (const n of p.imagePlan.needs) {
    const id = engine.get(canonicalRef(n.ref));
    if (id) images[n.ref] = id;
  }
  const engineRefs: Record<string, string> = {};
  for (const img of p.bundle.images) {
    const idx = p.indexes.get(img.file);
    if (img.role && idx?.images[0]?.repoTags[0]) engineRefs[img.role] = idx.images[0].repoTags[0];
  }
  const release = p.plan.bundle.release ?? "unknown";
  // A copy of the compose file and override as they run now: a rollback to this release runs
  // them even after the checkout was updated in place (0.1 -> 0.2).
  let saved: { composeFile: string; override?: string; sha256?: string } | undefined;
  try {
    saved = await saveStackFiles(o.stateDir, release, p.digest, {
      composeFile: o.composeFile,
      override: overridePath(o.composeFile),
      cortexDir: o.cortexDir,
    });
  } catch (e) {
    ctx.log.warn(`Cannot keep a copy of the compose files in ${o.stateDir}: ${e}`);
  }
  return {
    release,
    line: p.policy.line,
    bundleDigest: p.digest,
    bundleDir: p.bundle.dir,
    installedAt: ctx.now().toISOString(),
    engineRefs,
    images,
    envFiles,
    override: overridePath(o.composeFile),
    outcome,
    stack: {
      cortexDir: o.cortexDir,
      composeFile: o.composeFile,
      project: o.project,
      profiles: p.profiles,
      compose: p.compose.major === 1 ? "v1" : "v2",
      readiness: p.readiness,
      ...(saved ? { saved } : {}),
    },
    inputs: await installInputs(o),
  };
}

/**
 * The stack of an upgrade did not become healthy: record this release as failed and return the
 * host to the previous one (files, image tags, stack). Always throws a stack error (exit 6).
 */
async function rollBack(run: InstallRun, e: InstallError): Promise<never> {
  const { ctx, options: o, journal, prepared: p } = run;
  const previous = run.previous!;
  ctx.log.warn(`The updated stack did not become healthy: ${e.message}`);
  ctx.log.warn(`Rolling back to Cortex ${previous.release}`);
  const failed = await releaseRecord(run, "failed");
  const from = recordRelease(journal, failed);
  await writeJournal(o.stateDir, journal);
  let restored: string;
  try {
    const r = await rollbackTo(ctx, journal, {
      // --wait-timeout bounds the wait for the new release; the release returned to gets at least
      // ROLLBACK_MIN_WAIT_SEC (giving up on it early would leave no working release).
      waitTimeoutSec: Math.max(o.waitTimeoutSec, ROLLBACK_MIN_WAIT_SEC),
      from,
      stack: failed.stack!,
      // The failed release's database is of no use: no backup of it first.
      database: o.skipDb ? { skip: true } : {},
    });
    for (const ev of r.database.events) {
      recordDbEvent(journal, ev);
      run.dbEvents.push(ev);
    }
    const ev = r.database.events.find((x) => x.kind === "restore");
    if (ev) run.report.database = { ...run.report.database, rollbackRestored: ev };
    restored = ev
      ? `, its database restored from ${ev.path}`
      : r.database.skipped
      ? ` (database not restored: ${r.database.skipped})`
      : "";
    await writeJournal(o.stateDir, journal);
  } catch (re) {
    await writeJournal(o.stateDir, journal).catch(() => {});
    throw stackError(
      `The update to Cortex ${p.plan.bundle.release} failed (${e.message}) and the rollback to ${previous.release} failed too: ${
        (re as Error).message
      }`,
      (re instanceof InstallError && re.hint ? re.hint + " " : "") +
        "Then run `cortex-install status` and `cortex-install rollback`.",
      [re instanceof InstallError ? re.detail : undefined, e.detail].filter(Boolean).join("\n") ||
        undefined,
    );
  }
  throw stackError(
    `The update to Cortex ${p.plan.bundle.release} failed: ${e.message}. The host was rolled back to Cortex ${previous.release}${restored}, which is healthy.`,
    "The logs of the failing service are below. Fix the cause and run the update again.",
    e.detail,
  );
}
