/** `install` and `plan`: flags -> InstallOptions, the question, and the printed plan/report. */
import { $ } from "dax";
import type { Context } from "../context.ts";
import { ExitCode, UsageError } from "../errors.ts";
import { formatBytes } from "../progress.ts";
import { runInstall } from "../steps/install.ts";
import {
  type InstallOptions,
  installOptions,
  type InstallPlan,
  type InstallReport,
} from "../steps/types.ts";
import { DEFAULT_COMPOSE, DEFAULT_KEEP_BACKUPS, DEFAULT_WAIT_TIMEOUT_SEC } from "../layout.ts";
import { COMPOSE_CHOICES, type ComposeChoice } from "../docker.ts";
import { passwordProblems, readPasswordFile } from "../host/admin.ts";
import { MODEL_CONFLICT_POLICIES, type ModelConflict } from "../host/cortex_api.ts";
import { settings02Lines } from "../host/settings02.ts";
import { absPath, locateBundle, locateComposeFile, locateCortexDir } from "./paths.ts";
import type { CommandHandler, CommandOutcome } from "./handler.ts";
import { type Parsed, str } from "./flags.ts";

/** Parses `--wait-timeout`: a positive whole number of seconds. */
export function parseWaitTimeout(v: string | undefined): number {
  const n = Number(v ?? DEFAULT_WAIT_TIMEOUT_SEC);
  if (!Number.isInteger(n) || n <= 0) {
    throw new UsageError(`--wait-timeout must be a positive number of seconds, not "${v}"`);
  }
  return n;
}

/** Parses `--model-conflict` (default skip). */
export function parseModelConflict(v: string | undefined): ModelConflict {
  if (v === undefined) return "skip";
  if ((MODEL_CONFLICT_POLICIES as readonly string[]).includes(v)) return v as ModelConflict;
  throw new UsageError(
    `--model-conflict must be one of ${MODEL_CONFLICT_POLICIES.join(", ")}, not "${v}"`,
    "skip leaves a registered model as it is (the default).",
  );
}

/** Parses `--keep-backups`: a whole number of backups, 0 or more. */
export function parseKeepBackups(v: string | undefined): number {
  const n = Number(v ?? DEFAULT_KEEP_BACKUPS);
  if (v === "" || !Number.isInteger(n) || n < 0) {
    throw new UsageError(
      `--keep-backups must be a whole number of backups (0 or more), not "${v}"`,
    );
  }
  return n;
}

/** Parses `--profiles a,b` (empty string = no profiles). */
export function parseProfiles(v: string | undefined): string[] | undefined {
  if (v === undefined) return undefined;
  const list = v.split(",").map((s) => s.trim()).filter(Boolean);
  for (const p of list) {
    if (!/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/.test(p)) {
      throw new UsageError(`Invalid profile name "${p}" in --profiles`);
    }
  }
  return list;
}

/** Parses `--compose v1|v2|auto`. */
export function parseComposeChoice(v: string | undefined): ComposeChoice {
  const c = (v ?? DEFAULT_COMPOSE) as ComposeChoice;
  if (!COMPOSE_CHOICES.includes(c)) {
    throw new UsageError(
      `--compose must be one of ${COMPOSE_CHOICES.join(", ")}, not "${v}"`,
      "v2 runs `docker compose`, v1 the standalone `docker-compose` 1.x, auto the first found.",
    );
  }
  return c;
}

/**
 * Asks for the first admin's password on the terminal: hidden (nothing is echoed), asked twice,
 * checked as Cortex checks it (length, known defaults, what the root .env can hold); three tries.
 */
export async function promptAdminPassword(
  ctx: Context,
  q: { user: string; production: boolean },
): Promise<string> {
  ctx.progress.clear();
  for (let attempt = 1; attempt <= 3; attempt++) {
    const first = await $.prompt({
      message: `Password for Cortex's first admin "${q.user}" (hidden)`,
      mask: { char: "" },
      noClear: true,
    });
    const again = await $.prompt({
      message: "The same password again (hidden)",
      mask: { char: "" },
      noClear: true,
    });
    if (first !== again) {
      ctx.log.warn("The two passwords differ; try again.");
      continue;
    }
    const problems = passwordProblems(first, q.user, q.production);
    if (problems.length > 0) {
      ctx.log.warn(`${problems.join("; ")}; try again.`);
      continue;
    }
    return first;
  }
  throw new UsageError(
    "No usable password for Cortex's first admin after 3 tries",
    "Run again, or pass --admin-password-file FILE (one line, the password).",
  );
}

/**
 * The install options from the flags: locates the bundle and the Cortex dir (asking on a TTY
 * when allowed), then builds them with installOptions (defaults for what no flag gives).
 */
export async function installOptionsFromFlags(
  ctx: Context,
  f: Parsed["values"],
  dryRun: boolean,
  argv: string[],
): Promise<InstallOptions> {
  const prompt = !dryRun && f.yes !== true;
  const bundleDir = await locateBundle(ctx, str(f.bundle), prompt);
  const cortexDir = await locateCortexDir(ctx, str(f["cortex-dir"]), prompt);
  const composeFile = await locateComposeFile(ctx, cortexDir, str(f["compose-file"]));
  const yes = f.yes === true;
  const path = (v: unknown) => str(v) && absPath(ctx, str(v)!);
  const compose = parseComposeChoice(str(f.compose));
  let passwordFromFile: string | undefined;
  if (str(f["admin-password-file"])) {
    const r = await readPasswordFile(path(f["admin-password-file"])!);
    if (r.warning) ctx.log.warn(r.warning);
    passwordFromFile = r.password;
  }
  return installOptions({
    bundleDir,
    cortexDir,
    composeFile,
    project: str(f["project-name"]),
    modelsDir: path(f["models-dir"]),
    hfCacheDir: path(f["hf-cache-dir"]),
    stateDir: path(f["state-dir"]),
    manifestPath: path(f.manifest),
    network: f.offline ? "offline" : f.online ? "online" : undefined,
    profiles: parseProfiles(str(f.profiles)),
    waitTimeoutSec: parseWaitTimeout(str(f["wait-timeout"])),
    skipModels: f["skip-models"] === true,
    skipStart: f["skip-start"] === true,
    link: f.link === true,
    allowDowngrade: f["allow-downgrade"] === true,
    allowUnlisted: f["allow-unlisted"] === true,
    noVerify: f["no-verify"] === true,
    compose,
    admin: {
      ...(str(f["admin-user"]) !== undefined ? { user: str(f["admin-user"]) } : {}),
      ...(passwordFromFile !== undefined ? { passwordFromFile } : {}),
    },
    corsOrigin: str(f["cors-origin"]),
    // On a terminal, without --yes: asked (hidden, twice); else exit 2 naming the flags.
    askAdminPassword: !dryRun && !yes && ctx.interactive
      ? (q) => promptAdminPassword(ctx, q)
      : undefined,
    keepBackups: parseKeepBackups(str(f["keep-backups"])),
    restoreDb: f["restore-db"] === true,
    skipDb: f["skip-db"] === true,
    modelConflict: parseModelConflict(str(f["model-conflict"])),
    skipRegister: f["skip-register"] === true,
    dryRun,
    argv,
    confirm: async (plan) => {
      if (yes) return true;
      if (!ctx.interactive) {
        throw new UsageError(
          "Confirmation needed, but stdin is not a terminal",
          "Pass --yes to install unattended, or run `cortex-install plan` to see what would change.",
        );
      }
      ctx.progress.clear();
      Deno.stderr.writeSync(new TextEncoder().encode(renderPlan(plan) + "\n"));
      return await $.confirm({ message: "Go on with the install?", default: false, noClear: true });
    },
  });
}

/** The plan, for people. */
export function renderPlan(p: InstallPlan): string {
  const l: string[] = [];
  l.push(`Plan for Cortex ${p.bundle.release ?? "?"} from ${p.bundle.dir} (${p.bundle.format})`);
  l.push(
    `  release line: ${p.policy.line}.x (${
      p.policy.decidedBy === "both"
        ? "the bundle and the checkout agree"
        : p.policy.decidedBy === "layout"
        ? "from the bundle's layout"
        : `named by the ${p.policy.decidedBy}`
    }); compose: ${p.compose.cmd} ${p.compose.version}`,
  );
  for (const w of p.bundle.warnings) l.push(`  warning: ${w}`);
  if (p.installed) {
    l.push(
      `  installed now: Cortex ${p.installed.release} (${p.installed.installedAt})${
        p.upgrade ? "  -> upgrade" : ""
      }`,
    );
  }
  if (p.resume) l.push("  resuming an interrupted run");
  if (p.from01) {
    l.push(
      `  upgrade from Cortex 0.1 to 0.2 in place: ${p.from01.release} (installed by ${p.from01.installedBy}) is backed up, stopped, and kept for a rollback`,
    );
    if (p.from01.carried.length) {
      l.push(
        `  carried from ${p.from01.carriedFrom} into the root .env: ${
          p.from01.carried.map((c) => `${c.key}=${c.value}`).join(", ")
        }`,
      );
    }
    for (const n of p.from01.notes) l.push(`  note: ${n}`);
  }
  l.push(`  network: ${p.network.mode} (${p.network.reason})`);
  l.push(
    `  GPU: ${
      p.gpu.state === "ok"
        ? `${p.gpu.gpus} GPU(s), driver ${p.gpu.driverVersion}, CUDA ${p.gpu.cudaVersion}`
        : p.gpu.state
    }` +
      `; nvidia runtime: ${p.gpu.nvidiaRuntime ? "yes" : "no"}; profiles: ${
        p.profiles.join(",") || "(none)"
      }`,
  );
  for (const c of p.checks.filter((c) => c.status !== "ok")) {
    l.push(`  ${c.status}: ${c.title}: ${c.detail}`);
  }
  l.push("Images:");
  const verb = {
    present: "skip (present)",
    load: "load          ",
    "not-needed": "not needed    ",
  };
  for (const i of p.images) l.push(`  ${verb[i.action]} ${i.refs.join(", ") || i.file}`);
  for (const e of p.engines) {
    l.push(
      `  engine ${e.repository}: ${e.chosen} runs on this host (${e.detail}); not needed: ${
        e.notNeeded.join(", ") || "none"
      }`,
    );
  }
  for (const r of p.retags) l.push(`  retag          ${r.from} -> ${r.to} (service ${r.service})`);
  l.push("Settings:");
  for (const s of p.settings) {
    if (!s.changed) {
      l.push(`  unchanged      ${s.path}`);
      continue;
    }
    l.push(`  write          ${s.path}`);
    for (const k of s.keys) {
      const shown = (v: string | undefined) =>
        v === undefined ? "(unset)" : v === "" ? "(blank)" : v;
      l.push(`                   ${k.key}: ${shown(k.old)} -> ${shown(k.new)}`);
    }
  }
  if (p.settings02) {
    const root = p.settings.find((s) => s.path.endsWith("/.env"))?.path;
    for (const x of settings02Lines(p.settings02, root)) l.push(`  ${x}`);
  }
  if (p.wheels) {
    l.push(
      `Wheels: ${p.wheels.files} file(s) -> ${p.wheels.target} (${
        p.wheels.action === "copy" ? "copy" : p.wheels.reason ?? p.wheels.action
      })`,
    );
  }
  if (p.models.length) l.push("Models:");
  for (const m of p.models) {
    l.push(`  ${m.action.padEnd(14)} ${m.name} -> ${m.target} (${formatBytes(m.bytes)})`);
  }
  const db = p.database;
  if (db.backup || db.restore || db.notes.length || db.running) l.push("Database:");
  if (db.running) {
    l.push(
      `  running        ${db.running.database} as ${db.running.user} (${
        formatBytes(db.running.sizeBytes)
      }${db.running.holdsData ? ", holds data" : ", empty"}${
        db.running.alembicVersion ? `, alembic ${db.running.alembicVersion}` : ""
      })`,
    );
  }
  if (db.backup && !db.backup.reuse) {
    l.push(
      `  backup         ${db.backup.reason} -> ${db.backup.dir}${
        db.backup.estimateBytes !== undefined
          ? ` (up to ${formatBytes(db.backup.estimateBytes)})`
          : ""
      }`,
    );
  }
  if (db.restore) {
    l.push(
      `  restore        ${db.restore.file} (${formatBytes(db.restore.bytes)})${
        db.restore.replace ? ", replacing the database after a backup of it" : ""
      }`,
    );
  }
  for (const n of db.notes) l.push(`  note: ${n}`);
  if (p.register) {
    l.push(
      `Register in Cortex: ${
        p.register.models.join(", ")
      } from ${p.register.containerPath} as "${p.register.user}" (--model-conflict ${p.register.conflict})`,
    );
  } else if (p.registerSkipped) {
    l.push(`Register in Cortex: not done (${p.registerSkipped})`);
  }
  l.push("Disk:");
  for (const d of p.disk) {
    l.push(
      `  ${d.mount}: needs ${formatBytes(d.requiredBytes)} with margin, ${
        d.freeBytes === undefined ? "free unknown" : `${formatBytes(d.freeBytes)} free`
      }`,
    );
  }
  l.push(`Services to start: ${p.services.map((s) => s.name).join(", ")}`);
  for (const m of p.missingImages) {
    l.push(`  warning: service "${m.service}" needs "${m.ref}", which nothing provides`);
  }
  if (p.readiness.length) l.push(`Ready when these answer: ${p.readiness.join(", ")}`);
  return l.join("\n");
}

/** The install report, for people. */
export function renderReport(r: InstallReport): string {
  const l: string[] = [];
  if (r.outcome === "unchanged") {
    l.push("Nothing to do: this bundle is installed and unchanged.");
  } else if (r.outcome === "cancelled") {
    l.push("Cancelled: nothing was changed.");
  } else {
    const loaded = r.images?.images.filter((i) => i.verdict === "loaded").length ?? 0;
    const present = r.images?.images.filter((i) => i.verdict === "present").length ?? 0;
    const notNeeded = r.images?.images.filter((i) => i.verdict === "not-needed").length ?? 0;
    l.push(`Installed Cortex ${r.plan?.bundle.release ?? ""}`.trim());
    l.push(
      `  images: ${loaded} loaded, ${present} already present, ${
        notNeeded ? `${notNeeded} not needed on this host, ` : ""
      }${r.retags?.length ?? 0} retagged`,
    );
    if (r.models) {
      const by = (v: string) => r.models!.models.filter((m) => m.verdict === v).length;
      l.push(
        `  models: ${by("copied") + by("linked")} copied, ${by("skipped")} unchanged, ${
          by("conflict")
        } conflicts, ${by("incomplete")} incomplete`,
      );
      for (
        const m of r.models.models.filter((m) =>
          m.verdict === "conflict" || m.verdict === "incomplete"
        )
      ) {
        l.push(
          `    ${m.verdict}: ${m.target}${m.warnings.length ? `: ${m.warnings.join("; ")}` : ""}`,
        );
      }
    }
    if (r.wheels) l.push(`  wheels: ${r.wheels.action} ${r.wheels.target}`);
    if (r.settings) {
      for (const f of r.settings.files) {
        l.push(
          `  ${f.changed ? "wrote" : "kept "} ${f.path}${f.backup ? ` (backup ${f.backup})` : ""}`,
        );
      }
    }
  }
  const d = r.database;
  if (d?.backup) {
    l.push(
      `  database backup: ${d.backup.path} (${formatBytes(d.backup.bytes)}${
        d.backup.reused ? ", taken by the interrupted run" : ""
      })`,
    );
  }
  if (d?.backupBeforeRestore) {
    l.push(`  database backed up before --restore-db: ${d.backupBeforeRestore.path}`);
  }
  if (d?.restored) {
    l.push(`  database restored from ${d.restored.path} (${formatBytes(d.restored.bytes)})`);
  }
  if (d?.alreadyRestored) {
    l.push("  database: already holds the bundle's dump (not restored again)");
  }
  if (d?.pruned?.length) l.push(`  old database backups removed: ${d.pruned.join(", ")}`);
  for (const m of r.register?.models ?? []) {
    l.push(
      `  model ${m.source} in Cortex: ${m.status}${
        m.servedModelName !== m.source ? ` as ${m.servedModelName}` : ""
      }`,
    );
  }
  const services = (r.stack?.services ?? []) as { name: string; state: string; health?: string }[];
  if (services.length) {
    l.push(`  services: ${services.map((s) => `${s.name} ${s.health ?? s.state}`).join(", ")}`);
  }
  for (const u of r.urls ?? []) l.push(`  ready: ${u}`);
  return l.join("\n");
}

function outcome(r: InstallReport): CommandOutcome {
  const exitCode = r.outcome === "cancelled" ? ExitCode.Interrupted : ExitCode.Ok;
  return {
    exitCode,
    report: r as unknown as Record<string, unknown>,
    human: r.outcome === "planned" && r.plan ? renderPlan(r.plan) : renderReport(r),
  };
}

export const installCommand: CommandHandler = async (ctx, f) => {
  const dry = f["dry-run"] === true;
  const o = await installOptionsFromFlags(ctx, f, dry, Deno.args);
  return outcome(await runInstall(ctx, o));
};

export const planCommand: CommandHandler = async (ctx, f) => {
  const o = await installOptionsFromFlags(ctx, f, true, Deno.args);
  return outcome(await runInstall(ctx, o));
};
