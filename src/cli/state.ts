/** `status` and `rollback`: what the journal says, and going back to the previous release. */
import { $ } from "dax";
import type { Context } from "../context.ts";
import { ExitCode, preflightError, UsageError } from "../errors.ts";
import { DEFAULT_STATE_DIR } from "../layout.ts";
import { currentRelease, previousRelease, readJournal, writeJournal } from "../state/journal.ts";
import { acquireLock } from "../state/lock.ts";
import { auditRun } from "../state/audit.ts";
import { stackStatus } from "../host/stack.ts";
import { loadReleaseManifest } from "../bundle/release.ts";
import { engineImages, recordedImages } from "../images/load.ts";
import { rollbackTo } from "../host/rollback.ts";
import { absPath } from "./paths.ts";
import { parseWaitTimeout } from "./install.ts";
import type { CommandHandler } from "./handler.ts";
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
    previous: previousRelease(j)?.release.release ?? null,
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
      const ok = await $.confirm({
        message: `Roll back from Cortex ${cur.release} to ${prev.release.release}?`,
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
    const r = await rollbackTo(ctx, j, {
      waitTimeoutSec,
      // A release recorded without its readiness URLs gets the embedded manifest's.
      stack: { ...stack, readiness: release.readiness },
      from: j.current,
      to: prev.index,
    });
    await writeJournal(stateDir, j);
    await auditRun(ctx, stateDir, {
      command: ["cortex-install", ...Deno.args],
      bundleDigest: prev.release.bundleDigest,
      release: prev.release.release,
      artifacts: [],
      outcome: "ok",
      exitCode: 0,
      durationMs: Math.round(performance.now() - t0),
    });
    return {
      exitCode: ExitCode.Ok,
      report: { command: "rollback", ok: true, ...r },
      human:
        `Rolled back from Cortex ${r.from} to ${r.to}; restored ${r.restored.length} file(s), ${r.retagged.length} image tag(s); stack healthy.`,
    };
  } finally {
    lock.release();
  }
};
