/**
 * The shapes of `install`: its options, the plan shown before asking, the report, what the
 * preflight prepares, and the one shape every step has (`InstallStep`), run by steps/runner.ts.
 */
import type { Context } from "../context.ts";
import type { Bundle, TarIndex } from "../bundle/types.ts";
import type { PolicyChoice, ReleaseManifest } from "../bundle/release.ts";
import type { ComposeChoice, ComposeCli } from "../docker.ts";
import type { EngineChoices } from "../host/engines.ts";
import type { Settings02Plan, settings02Report } from "../host/settings02.ts";
import type { WheelsPlan } from "../host/wheels.ts";
import type { VerifyReport } from "../bundle/verify.ts";
import type { DoctorReport } from "../doctor/mod.ts";
import type { ImagePlan } from "../host/compose.ts";
import type { SettingsPlan, SettingsResult } from "../host/settings.ts";
import type { ModelPlan } from "../host/models/plan.ts";
import type { ModelsResult } from "../host/models/copy.ts";
import type { Readiness, StackResult } from "../host/stack.ts";
import type { LoadReport } from "../images/load.ts";
import type { DbBackup, DbEvent, Journal, Release } from "../state/journal.ts";
import type { DatabasePlan } from "../host/database.ts";
import type { Verdict } from "../state/audit.ts";
import type { ModelConflict } from "../host/cortex_api.ts";
import type { RegisterPlan } from "../host/register.ts";
import type { RegisterReport } from "./register_models.ts";
import {
  DEFAULT_COMPOSE,
  DEFAULT_HF_CACHE_DIR,
  DEFAULT_KEEP_BACKUPS,
  DEFAULT_MODELS_DIR,
  DEFAULT_PROJECT,
  DEFAULT_STATE_DIR,
  DEFAULT_WAIT_TIMEOUT_SEC,
} from "../layout.ts";

export interface InstallOptions {
  bundleDir: string;
  cortexDir: string;
  composeFile: string;
  project: string;
  modelsDir: string;
  hfCacheDir: string;
  stateDir: string;
  manifestPath?: string;
  network?: "offline" | "online";
  profiles?: string[];
  waitTimeoutSec: number;
  skipModels: boolean;
  skipStart: boolean;
  link: boolean;
  allowDowngrade: boolean;
  allowUnlisted: boolean;
  noVerify: boolean;
  /** Which compose runs the stack (`--compose`). */
  compose: ComposeChoice;
  /** Cortex 0.2's first admin: `--admin-user`, the content of `--admin-password-file`. */
  admin: { user?: string; passwordFromFile?: string };
  /** Cortex 0.2's UI origin(s) (`--cors-origin`). */
  corsOrigin?: string;
  /**
   * Asks for the first admin's password (hidden, twice) when no flag, file, environment or
   * root .env gives one; absent when nothing may be asked (no terminal, or --yes): then the
   * install exits 2 naming the flags. Never called by a dry run.
   */
  askAdminPassword?: (q: { user: string; production: boolean }) => Promise<string>;
  /** Database backups kept after a successful run (the rollback target's is always kept). */
  keepBackups: number;
  /** Restore the bundle's dump even over data or when restored before (a backup is taken first). */
  restoreDb: boolean;
  /** Leave the database alone: no backup before an upgrade, no restore of the bundle's dump. */
  skipDb: boolean;
  /** What Cortex does with a model record whose served name is registered (`--model-conflict`). */
  modelConflict: ModelConflict;
  /** Do not register the bundle's model records in Cortex (`--skip-register`). */
  skipRegister: boolean;
  /** Compute and return the plan; change nothing (no lock either). */
  dryRun: boolean;
  /** Asked once with the plan; false cancels before any write. */
  confirm: (plan: InstallPlan) => Promise<boolean>;
  /** The command line, for the audit log (redacted there). */
  argv: string[];
}

/** What every caller must say; everything else has a default (see installOptions). */
export type InstallInputs =
  & Pick<InstallOptions, "bundleDir" | "cortexDir" | "composeFile">
  & Partial<InstallOptions>;

/**
 * The one builder of install options: the given values, and the defaults (layout.ts) for the
 * rest. A run built without `confirm` goes on without asking (the CLI passes its prompt).
 */
export function installOptions(i: InstallInputs): InstallOptions {
  const defaults: Omit<
    InstallOptions,
    keyof InstallInputs & ("bundleDir" | "cortexDir" | "composeFile")
  > = {
    project: DEFAULT_PROJECT,
    modelsDir: DEFAULT_MODELS_DIR,
    hfCacheDir: DEFAULT_HF_CACHE_DIR,
    stateDir: DEFAULT_STATE_DIR,
    waitTimeoutSec: DEFAULT_WAIT_TIMEOUT_SEC,
    skipModels: false,
    skipStart: false,
    link: false,
    allowDowngrade: false,
    allowUnlisted: false,
    noVerify: false,
    compose: DEFAULT_COMPOSE,
    admin: {},
    keepBackups: DEFAULT_KEEP_BACKUPS,
    restoreDb: false,
    skipDb: false,
    modelConflict: "skip",
    skipRegister: false,
    dryRun: false,
    confirm: () => Promise.resolve(true),
    argv: [],
  };
  // An option given as undefined takes its default.
  const given = Object.fromEntries(Object.entries(i).filter(([, v]) => v !== undefined));
  return { ...defaults, ...given as InstallInputs };
}

/** What install will do; printed by `plan` and shown before asking to go on. */
export interface InstallPlan {
  bundle: { dir: string; format: string; digest: string; release?: string; warnings: string[] };
  /** The release line whose policy applies, and which side named it (see selectPolicy). */
  policy: { line: string; version?: string; decidedBy: PolicyChoice["decidedBy"] };
  /** The compose that runs the stack. */
  compose: { cmd: string; version: string; major: 1 | 2 };
  installed?: { release: string; bundleDigest: string; installedAt: string };
  upgrade: boolean;
  resume: boolean;
  network: DoctorReport["network"];
  gpu: {
    state: string;
    driverVersion?: string;
    cudaVersion?: string;
    gpus: number;
    nvidiaRuntime: boolean;
  };
  profiles: string[];
  checks: DoctorReport["checks"];
  disk: DoctorReport["disk"];
  images: {
    file: string;
    refs: string[];
    imageId: string;
    /** not-needed: an engine build this host's driver does not need (see `engines`). */
    action: "load" | "present" | "not-needed";
    critical: boolean;
  }[];
  /** Engine builds chosen for this GPU driver (several builds of one engine in the bundle). */
  engines: { repository: string; chosen?: string; notNeeded: string[]; detail?: string }[];
  retags: { service: string; from: string; to: string }[];
  services: { name: string; image?: string }[];
  settings: {
    path: string;
    changed: boolean;
    keys: { key: string; old?: string; new: string }[];
  }[];
  models: { name: string; target: string; action: string; bytes: number }[];
  /** Cortex 0.2: secrets, first admin, CORS, prod-check (no secret value). */
  settings02?: ReturnType<typeof settings02Report>;
  /** Cortex 0.2 script bundles: wheels/ -> backend/wheels/. */
  wheels?: { files: number; target: string; action: WheelsPlan["action"]; reason?: string };
  /** The readiness URLs the stack must answer. */
  readiness: string[];
  /** Images compose needs that nothing provides (only with --skip-start; else an error). */
  missingImages: { service: string; ref: string }[];
  /** Backup before an upgrade, restore of the bundle's dump, and what will not happen and why. */
  database: DatabasePlan;
  /** Cortex 0.2: the bundle's model records registered in Cortex after `stack` (no password). */
  register?: RegisterPlan;
  /** Why the bundle's model records will not be registered (e.g. --skip-start). */
  registerSkipped?: string;
  /**
   * Cortex 0.1 -> 0.2 in place: the 0.1 upgraded (installed by cortex-install or by hand) and
   * the settings carried from its backend/.env into the root .env (secret values hidden).
   */
  from01?: {
    release: string;
    installedBy: "cortex-install" | "hand";
    carriedFrom?: string;
    carried: { key: string; value: string }[];
    notes: string[];
  };
}

export interface InstallReport {
  command: "install" | "plan";
  ok: boolean;
  /** "installed", "unchanged" (re-run with nothing to do), "planned", "cancelled". */
  outcome: "installed" | "unchanged" | "planned" | "cancelled";
  plan?: InstallPlan;
  network?: DoctorReport["network"];
  gpu?: InstallPlan["gpu"];
  images?: LoadReport;
  retags?: InstallPlan["retags"];
  files?: VerifyReport["files"];
  models?: ModelsResult;
  settings?: SettingsResult;
  wheels?: { target: string; action: "copied" | "kept"; files: number };
  stack?: StackResult | { services: unknown[]; healthy: boolean; repaired: boolean };
  urls?: string[];
  /** What was done to the database: backups taken, dumps restored, a rollback's restore, pruning. */
  database?: DatabaseReport;
  /** Cortex 0.2: each model record registered in Cortex (created, skipped, replaced). */
  register?: RegisterReport;
  durations: Record<string, number>;
}

/** The database part of the install report. */
export interface DatabaseReport {
  /** The backup taken before the upgrade (or reused from the interrupted run). */
  backup?: DbBackup & { reused?: boolean };
  /** The backup taken before --restore-db replaced a database holding data. */
  backupBeforeRestore?: DbBackup;
  /** The bundle's dump restored (or why it was not, when found only after postgres started). */
  restored?: DbEvent;
  /** Set when the restore was skipped at run time: the database already held this dump. */
  alreadyRestored?: boolean;
  /** The automatic rollback's restore of the backup taken before the upgrade. */
  rollbackRestored?: DbEvent;
  /** Old backups removed after the run (--keep-backups). */
  pruned?: string[];
}

/** Everything the preflight read, checked and computed before the first write. */
export interface Prepared {
  release: ReleaseManifest;
  /** How the release line was chosen (bundle, checkout). */
  policy: PolicyChoice;
  /** The compose that runs the stack (the doctor found it, as --compose asked). */
  compose: ComposeCli;
  /** The engine builds chosen for this driver, when a working GPU made a choice. */
  engines?: EngineChoices;
  /** Tars not loaded on this host (engine builds not needed), by file, and why. */
  notNeeded: Map<string, string>;
  /** Cortex 0.2's settings plan (secrets, admin, CORS), for reports. */
  settings02?: Settings02Plan;
  wheels?: WheelsPlan;
  bundle: Bundle;
  digest: string;
  indexes: Map<string, TarIndex>;
  doctor: DoctorReport;
  profiles: string[];
  imagePlan: ImagePlan;
  settingsPlan: SettingsPlan;
  modelPlan?: ModelPlan;
  readiness: Readiness[];
  plan: InstallPlan;
  database: DatabasePlan;
  /** The model registration after `stack` (host/register.ts). */
  register?: RegisterPlan;
}

/** One install under way, handed to each step. */
export interface InstallRun {
  ctx: Context;
  options: InstallOptions;
  prepared: Prepared;
  /** The state journal; steps record in it, the runner writes it. */
  journal: Journal;
  /** The report being built: each step's `report` is merged into it as the step ends. */
  report: InstallReport;
  /** What was found for each artifact, for the audit log: steps append as they find. */
  verdicts: Verdict[];
  /** The release in effect before this run when it is an upgrade: what a rollback returns to. */
  previous?: Release;
  /** Database backups taken and dumps restored, for the journal and the audit log. */
  dbEvents: DbEvent[];
}

/** What a step hands back to the runner. */
export interface StepResult {
  /** Fields this step adds to the install report. */
  report?: Partial<InstallReport>;
}

/**
 * One step of `install`: a file of src/steps/ exporting one of these, listed in INSTALL_STEPS.
 * The runner records it in the journal (running, done), times it and merges its result.
 */
export interface InstallStep {
  /** The name in the journal, in `durations` and in errors. */
  name: string;
  /**
   * Whether it may change the host (images, files, containers). Once such a step has started,
   * a failure exits 7 (the host was changed: the journal says what was done), never 3.
   */
  changesHost: boolean;
  /** Run only when this says so (default: always). */
  when?: (run: InstallRun) => boolean;
  run(run: InstallRun): Promise<StepResult>;
}
