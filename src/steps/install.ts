/**
 * `install`: from a bundle to a healthy Cortex stack.
 *
 *   lock + journal -> quick re-run? -> preflight (nothing written) -> confirm ->
 *   runSteps(INSTALL_STEPS): verify -> backup -> load -> retag -> models -> settings ->
 *   database -> stack -> prune old backups -> finish
 *
 * Every input is read and validated, and the whole plan computed, before the first write. The
 * journal in the state dir records each step so that a re-run of an unchanged install does no
 * work, an interrupted run resumes, and an upgrade that fails its health check rolls back.
 */
import type { Context } from "../context.ts";
import { bundleDigest, readBundle } from "../bundle/read.ts";
import { loadReleasePolicies, pinsFor, selectPolicy } from "../bundle/release.ts";
import { readCheckoutVersions } from "../host/checkout.ts";
import { BUNDLE_JSON, BUNDLE_MANIFEST } from "../layout.ts";
import { ExitCode, InstallError, UsageError } from "../errors.ts";
import {
  currentRelease,
  type DbEvent,
  finishRun,
  type Journal,
  previousRelease,
  readJournal,
  recordRelease,
  writeJournal,
} from "../state/journal.ts";
import { pruneAfterRun } from "../host/database.ts";
import { byHandRelease, carriedNetwork, type Carry01, planCarry01 } from "../host/upgrade01.ts";
import { isUpgrade01to02 } from "../host/upgrade01.ts";
import { envRecord, parseEnv } from "../host/dotenv.ts";
import { DEFAULT_HF_CACHE_DIR, DEFAULT_MODELS_DIR, ROOT_ENV } from "../layout.ts";
import { dirname, join } from "node:path";
import { acquireLock, type StateLock } from "../state/lock.ts";
import { auditRun, type Verdict } from "../state/audit.ts";
import { preflight } from "./preflight.ts";
import { quickRerun } from "./rerun.ts";
import { fromOsError, runSteps } from "./runner.ts";
import type { InstallOptions, InstallReport, InstallRun } from "./types.ts";

export type { InstallOptions, InstallPlan, InstallReport } from "./types.ts";

const timed = async <T>(d: Record<string, number>, step: string, f: () => Promise<T>) => {
  const t = performance.now();
  try {
    return await f();
  } finally {
    d[step] = Math.round(performance.now() - t);
  }
};

/** Runs `install` (or only plans it with `dryRun`) and returns its report. */
export async function runInstall(ctx: Context, o: InstallOptions): Promise<InstallReport> {
  const durations: Record<string, number> = {};
  const started = ctx.now();
  const t0 = performance.now();
  let lock: StateLock | undefined;
  let journal: Journal | undefined;
  let digest: string | undefined;
  let releaseName: string | undefined;
  const verdicts: Verdict[] = [];
  const dbEvents: DbEvent[] = [];
  let forgetByHand: (() => void) | undefined;
  const end = (outcome: "ok" | "failed" | "interrupted", exitCode: number, error?: unknown) =>
    finish(ctx, o, journal!, {
      digest,
      release: releaseName,
      outcome,
      exitCode,
      started,
      t0,
      verdicts,
      dbEvents,
      error,
    });
  try {
    if (!o.dryRun) lock = await acquireLock(o.stateDir);
    journal = await readJournal(o.stateDir);
    const policies = await loadReleasePolicies(o.manifestPath);
    let bundle = await timed(durations, "bundle", () => readBundle(o.bundleDir, policies));
    digest = await bundleDigest(o.bundleDir);
    // The release line: the bundle's version and the checkout's versions.env must agree.
    const checkout = await readCheckoutVersions(o.cortexDir);
    const policy = selectPolicy(policies, {
      version: bundle.cortexVersion,
      layoutLine: bundle.format === "folder" ? undefined : bundle.line,
      source: bundle.format.startsWith("bundle-") ? BUNDLE_JSON : BUNDLE_MANIFEST,
    }, checkout);
    const release = policy.policy;
    // A folder of tars read as 0.1 whose checkout is 0.2: read it again with 0.2's policy.
    if (!policies.single && bundle.line !== policy.line) {
      bundle = await readBundle(o.bundleDir, { ...release, pins: pinsFor(policies, release) });
      bundle.line = policy.line;
    }
    releaseName = policy.version ?? bundle.cortexVersion ?? release.release;

    // Cortex 0.1 -> 0.2 in place: the 0.1 installed (the journal's, or one found running from
    // this checkout, installed by hand), and the settings its backend/.env carries over.
    // Until its files are written, a hand-installed 0.1 is only in this run's journal object.
    let writeByHand: (() => Promise<void>) | undefined;
    let carry: Carry01 | undefined;
    if (release.settings.mode === "root-env") {
      if (!currentRelease(journal) && !journal.inProgress) {
        const found = await byHandRelease(ctx, o);
        if (found) {
          ctx.log.info(`Found Cortex 0.1 running from ${o.cortexDir} (installed by hand)`);
          const idx = recordRelease(journal, found.release);
          writeByHand = found.write;
          forgetByHand = () => {
            journal!.releases.splice(idx, 1);
            delete journal!.current;
          };
        }
      }
      const rootEnv = await Deno.readTextFile(join(dirname(o.composeFile), ROOT_ENV))
        .catch(() => undefined);
      if (isUpgrade01to02(currentRelease(journal), policy.line)) {
        carry = await planCarry01(o.cortexDir, rootEnv);
      }
      o = withCarriedPaths(o, carry, rootEnv);
    }

    // A re-run of the installed, unchanged bundle: check, repair the stack if needed, done.
    if (!o.dryRun) {
      const quick = await timed(
        durations,
        "quick-check",
        () => quickRerun(ctx, o, journal!, digest!),
      );
      if (quick) {
        await end("ok", 0);
        return { ...quick, durations: { ...durations, total: Math.round(performance.now() - t0) } };
      }
    }

    const prepared = await timed(
      durations,
      "preflight",
      () =>
        preflight(ctx, o, {
          journal: journal!,
          release,
          policy,
          bundle,
          digest: digest!,
          checkout,
          ...(carry ? { carry } : {}),
        }),
    );
    const plan = prepared.plan;
    if (o.dryRun) return { command: "plan", ok: true, outcome: "planned", plan, durations };
    if (!(await o.confirm(plan))) {
      return { command: "install", ok: false, outcome: "cancelled", plan, durations };
    }
    // The hand-installed 0.1's compose copy and image pins, for a rollback to it.
    await writeByHand?.();
    forgetByHand = undefined;
    const run: InstallRun = {
      ctx,
      options: o,
      prepared,
      journal,
      verdicts,
      dbEvents,
      previous: plan.upgrade ? currentRelease(journal) : undefined,
      report: {
        command: "install",
        ok: true,
        outcome: "installed",
        plan,
        network: plan.network,
        gpu: plan.gpu,
        files: [],
        durations,
      },
    };
    await runSteps(run);
    // Old database backups go once the run succeeded; never the one a rollback would need.
    const pruned = await pruneAfterRun(
      ctx,
      o.stateDir,
      o.keepBackups,
      previousRelease(journal)?.release,
    );
    if (pruned.length) run.report.database = { ...run.report.database, pruned };
    await end("ok", 0);
    durations.total = Math.round(performance.now() - t0);
    return run.report;
  } catch (caught) {
    // An error of the system before the steps (an unreadable bundle file): exit 3, not a bug.
    // A run that stops before the hand-installed 0.1's files are written does not record it.
    forgetByHand?.();
    const e = ctx.signal.aborted ? caught : fromOsError("preflight", caught, false);
    if (journal && lock) {
      const code = e instanceof InstallError
        ? e.exitCode
        : e instanceof UsageError
        ? ExitCode.Usage
        : ctx.signal.aborted
        ? ExitCode.Interrupted
        : 1;
      await end(code === ExitCode.Interrupted ? "interrupted" : "failed", code, e)
        .catch((err) => ctx.log.warn(`Cannot record the run in ${o.stateDir}: ${err}`));
    }
    throw e;
  } finally {
    lock?.release();
  }
}

/** Records the run's end in the journal and the audit log. */
async function finish(
  ctx: Context,
  o: InstallOptions,
  journal: Journal,
  r: {
    digest?: string;
    release?: string;
    outcome: "ok" | "failed" | "interrupted";
    exitCode: number;
    started: Date;
    t0: number;
    verdicts: Verdict[];
    dbEvents: DbEvent[];
    error?: unknown;
  },
): Promise<void> {
  const finishedAt = ctx.now();
  const unfinished = r.outcome === "ok" ? undefined : journal.inProgress;
  finishRun(journal, {
    command: "install",
    startedAt: r.started.toISOString(),
    finishedAt: finishedAt.toISOString(),
    outcome: r.outcome,
    exitCode: r.exitCode,
    bundleDigest: r.digest,
  });
  // A failed or interrupted run stays recorded as unfinished: the next run resumes it.
  if (unfinished) journal.inProgress = unfinished;
  await writeJournal(o.stateDir, journal);
  await auditRun(ctx, o.stateDir, {
    command: ["cortex-install", ...o.argv],
    bundleDigest: r.digest,
    release: r.release,
    artifacts: r.verdicts,
    ...(r.dbEvents.length ? { database: r.dbEvents } : {}),
    outcome: r.outcome,
    exitCode: r.exitCode,
    durationMs: Math.round(performance.now() - r.t0),
    error: r.error instanceof Error ? r.error.message : undefined,
  }, finishedAt);
}

/**
 * Cortex 0.2 reads its models and HF cache dirs from the root .env: without --models-dir and
 * --hf-cache-dir (their defaults), the root .env's values stay, else those carried from 0.1's
 * backend/.env; without --offline/--online, 0.1's OFFLINE_MODE decides the network mode.
 */
function withCarriedPaths(
  o: InstallOptions,
  carry: Carry01 | undefined,
  rootEnvText: string | undefined,
): InstallOptions {
  const root = envRecord(parseEnv(rootEnvText ?? ""));
  const pick = (given: string, def: string, key: string) =>
    given !== def ? given : (root[key]?.trim() || carry?.values[key]?.trim() || given);
  const network = o.network ?? (carry ? carriedNetwork(carry) : undefined);
  return {
    ...o,
    modelsDir: pick(o.modelsDir, DEFAULT_MODELS_DIR, "CORTEX_MODELS_DIR"),
    hfCacheDir: pick(o.hfCacheDir, DEFAULT_HF_CACHE_DIR, "HF_CACHE_DIR"),
    ...(network ? { network } : {}),
  };
}
