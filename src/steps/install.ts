/**
 * `install`: the fixed list of steps from a bundle to a healthy Cortex stack.
 *
 *   preflight + plan (nothing written but the lock) -> load -> retag -> models -> settings -> stack
 *
 * Every input is read and validated, and the whole plan computed, before the first write. The
 * journal in the state dir records each step so that a re-run of an unchanged install does no
 * work, an interrupted run resumes, and an upgrade that fails its health check rolls back.
 */
import type { Context } from "../context.ts";
import type { Bundle, TarIndex } from "../bundle/types.ts";
import { bundleDigest, readBundle } from "../bundle/read.ts";
import { readTarIndex } from "../bundle/tarindex.ts";
import { loadReleaseManifest, type ReleaseManifest } from "../bundle/release.ts";
import { type DoctorReport, runDoctor } from "../doctor/mod.ts";
import {
  ExitCode,
  InstallError,
  integrityError,
  preflightError,
  stackError,
  throwIfAborted,
  UsageError,
} from "../errors.ts";
import { detectCompose, runDocker, tagImage } from "../docker.ts";
import {
  type AvailableImage,
  canonicalRef,
  type ImagePlan,
  parseCompose,
  planImages,
  readComposeSource,
} from "../install/compose.ts";
import {
  applySettings,
  planSettings,
  type SettingsPlan,
  type SettingsResult,
} from "../install/settings.ts";
import {
  cleanStaging,
  type ModelPlan,
  type ModelsResult,
  planModels,
  seedModels,
} from "../install/models.ts";
import { type Readiness, type StackResult, stackStatus, startStack } from "../install/stack.ts";
import {
  engineChains,
  layerSkipSupport,
  loadImages,
  type LoadReport,
  newLayerBytes,
} from "./load.ts";
import { assertVerified, verifyBundle, type VerifyReport } from "./verify.ts";
import {
  beginRun,
  currentRelease,
  finishRun,
  type Journal,
  markVerified,
  readJournal,
  recordLoaded,
  recordModel,
  recordRelease,
  recordStep,
  type Release,
  verifiedSha256,
  writeJournal,
} from "../state/journal.ts";
import { acquireLock, type StateLock } from "../state/lock.ts";
import { appendAudit, currentUser, type Verdict } from "../state/audit.ts";
import { CHECKSUMS_FILE, COMPOSE_OVERRIDE } from "../layout.ts";
import { sha256Hex } from "../hash.ts";
import { rollbackTo } from "./rollback.ts";

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
  /** Compute and return the plan; change nothing (no lock either). */
  dryRun: boolean;
  /** Asked once with the plan; false cancels before any write. */
  confirm: (plan: InstallPlan) => Promise<boolean>;
  /** The command line, for the audit log (redacted there). */
  argv: string[];
}

/** What install will do; printed by `plan` and shown before asking to go on. */
export interface InstallPlan {
  bundle: { dir: string; format: string; digest: string; release?: string; warnings: string[] };
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
    action: "load" | "present";
    critical: boolean;
  }[];
  retags: { service: string; from: string; to: string }[];
  services: { name: string; image?: string }[];
  settings: {
    path: string;
    changed: boolean;
    keys: { key: string; old?: string; new: string }[];
  }[];
  models: { name: string; target: string; action: string; bytes: number }[];
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
  stack?: StackResult | { services: unknown[]; healthy: boolean; repaired: boolean };
  urls?: string[];
  durations: Record<string, number>;
}

/** Everything computed before the first write. */
interface Prepared {
  release: ReleaseManifest;
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
}

const timed = async <T>(d: Record<string, number>, step: string, f: () => Promise<T>) => {
  const t = performance.now();
  try {
    return await f();
  } finally {
    d[step] = Math.round(performance.now() - t);
  }
};

/** Runs `install` (or only plans it with `dryRun`). */
export async function runInstall(ctx: Context, o: InstallOptions): Promise<InstallReport> {
  const durations: Record<string, number> = {};
  const started = ctx.now();
  const t0 = performance.now();
  let lock: StateLock | undefined;
  let journal: Journal | undefined;
  let digest: string | undefined;
  let releaseName: string | undefined;
  const verdicts: Verdict[] = [];
  try {
    if (!o.dryRun) lock = await acquireLock(o.stateDir);
    journal = await readJournal(o.stateDir);
    const release = await loadReleaseManifest(o.manifestPath);
    const bundle = await timed(durations, "bundle", () => readBundle(o.bundleDir, release));
    digest = await bundleDigest(o.bundleDir);
    releaseName = bundle.cortexVersion ?? release.release;

    // A re-run of the installed, unchanged bundle: check, repair the stack if needed, done.
    if (!o.dryRun) {
      const quick = await timed(
        durations,
        "quick-check",
        () => quickRerun(ctx, o, journal!, digest!),
      );
      if (quick) {
        await finish(ctx, o, journal, digest, releaseName, "ok", 0, started, t0, verdicts);
        return { ...quick, durations: { ...durations, total: Math.round(performance.now() - t0) } };
      }
    }

    const prep = await timed(
      durations,
      "preflight",
      () => prepare(ctx, o, journal!, release, bundle, digest!),
    );
    if (o.dryRun) {
      return { command: "plan", ok: true, outcome: "planned", plan: prep.plan, durations };
    }
    if (!(await o.confirm(prep.plan))) {
      return { command: "install", ok: false, outcome: "cancelled", plan: prep.plan, durations };
    }
    const report = await execute(ctx, o, journal, prep, durations, verdicts);
    await finish(ctx, o, journal, digest, releaseName, "ok", 0, started, t0, verdicts);
    durations.total = Math.round(performance.now() - t0);
    return report;
  } catch (e) {
    if (journal && lock) {
      const code = e instanceof InstallError
        ? e.exitCode
        : e instanceof UsageError
        ? ExitCode.Usage
        : ctx.signal.aborted
        ? ExitCode.Interrupted
        : 1;
      const outcome = code === ExitCode.Interrupted ? "interrupted" : "failed";
      await finish(ctx, o, journal, digest, releaseName, outcome, code, started, t0, verdicts, e)
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
  digest: string | undefined,
  release: string | undefined,
  outcome: "ok" | "failed" | "interrupted",
  exitCode: number,
  started: Date,
  t0: number,
  verdicts: Verdict[],
  error?: unknown,
): Promise<void> {
  const finishedAt = ctx.now();
  const unfinished = outcome === "ok" ? undefined : journal.inProgress;
  finishRun(journal, {
    command: "install",
    startedAt: started.toISOString(),
    finishedAt: finishedAt.toISOString(),
    outcome,
    exitCode,
    bundleDigest: digest,
  });
  // A failed or interrupted run stays recorded as unfinished: the next run resumes it.
  if (unfinished) journal.inProgress = unfinished;
  await writeJournal(o.stateDir, journal);
  const who = await currentUser((k) => ctx.env(k));
  await appendAudit(o.stateDir, {
    time: finishedAt.toISOString(),
    user: who.user,
    sudoUser: who.sudoUser,
    pid: Deno.pid,
    command: ["cortex-install", ...o.argv],
    bundleDigest: digest,
    release,
    artifacts: verdicts,
    outcome,
    exitCode,
    durationMs: Math.round(performance.now() - t0),
    error: error instanceof Error ? error.message : undefined,
  });
}

/** Images in the engine: `repo:tag` -> image ID. One docker call. */
export async function engineImages(ctx: Context): Promise<Map<string, string>> {
  const r = await runDocker(
    ["images", "--no-trunc", "--format", "{{.Repository}}:{{.Tag}}\t{{.ID}}"],
    ctx.docker,
  );
  const m = new Map<string, string>();
  if (r.code !== 0) return m;
  for (const line of r.stdout.split("\n")) {
    const [ref, id] = line.split("\t");
    if (!ref || !id || ref.includes("<none>")) continue;
    m.set(canonical(ref), id.trim());
  }
  return m;
}

const canonical = canonicalRef;

async function sha256OfFile(path: string): Promise<string | undefined> {
  try {
    return sha256Hex(await Deno.readFile(path));
  } catch {
    return undefined;
  }
}

/**
 * The re-run fast path: the journal says this bundle is installed and the last run succeeded;
 * if every recorded image still has its ID and every written file is as written, only the
 * stack's health is checked (and repaired with `up -d` if a service is down). Returns
 * undefined when anything differs, and the full (idempotent) install runs instead.
 */
async function quickRerun(
  ctx: Context,
  o: InstallOptions,
  journal: Journal,
  digest: string,
): Promise<Omit<InstallReport, "durations"> | undefined> {
  const cur = currentRelease(journal);
  if (!cur || cur.bundleDigest !== digest || journal.inProgress) return undefined;
  if (journal.lastRun?.outcome !== "ok") return undefined;
  if (cur.bundleDir !== o.bundleDir || cur.inputs !== await installInputs(o)) return undefined;
  const images = await engineImages(ctx);
  for (const [ref, id] of Object.entries(cur.images)) {
    if (images.get(canonical(ref)) !== id) {
      ctx.log.debug(`re-run: ${ref} is not ${id} any more; running the full install`);
      return undefined;
    }
  }
  for (const [path, f] of Object.entries(cur.envFiles)) {
    if ((await sha256OfFile(path)) !== f.sha256) {
      ctx.log.debug(`re-run: ${path} changed since the install; running the full install`);
      return undefined;
    }
  }
  for (const target of Object.keys(journal.models)) {
    try {
      await Deno.stat(target);
    } catch {
      return undefined;
    }
  }
  ctx.log.info(`Cortex ${cur.release} from this bundle is installed; checking the stack`);
  if (o.skipStart) {
    return { command: "install", ok: true, outcome: "unchanged" };
  }
  const status = await stackStatus(ctx, { project: o.project });
  if (status.healthy && status.services.length > 0) {
    return {
      command: "install",
      ok: true,
      outcome: "unchanged",
      stack: { services: status.services, healthy: true, repaired: false },
    };
  }
  ctx.log.info("Some services are not running: starting them again");
  const release = await loadReleaseManifest(o.manifestPath);
  const files = [o.composeFile, overridePath(o)];
  const compose = await detectCompose(ctx.docker);
  const stack = await startStack(ctx, {
    cortexDir: o.cortexDir,
    files,
    project: o.project,
    profiles: cur.stack?.profiles ?? o.profiles ?? [],
    compose,
    readiness: cur.stack?.readiness ?? release.readiness,
    waitTimeoutSec: o.waitTimeoutSec,
  });
  return { command: "install", ok: true, outcome: "unchanged", stack, urls: stack.urls };
}

/**
 * The inputs that decide what an install writes, besides the bundle: recorded with each release
 * so that a re-run with, say, another --models-dir is not taken for an unchanged one.
 */
export async function installInputs(o: InstallOptions): Promise<string> {
  let manifest = "embedded";
  if (o.manifestPath) {
    manifest = sha256Hex(await Deno.readFile(o.manifestPath).catch(() => new Uint8Array()));
  }
  return JSON.stringify({
    cortexDir: o.cortexDir,
    composeFile: o.composeFile,
    project: o.project,
    modelsDir: o.modelsDir,
    hfCacheDir: o.hfCacheDir,
    profiles: o.profiles ?? null,
    network: o.network ?? null,
    skipModels: o.skipModels,
    manifest,
  });
}

function overridePath(o: { composeFile: string }): string {
  return `${o.composeFile.slice(0, o.composeFile.lastIndexOf("/"))}/${COMPOSE_OVERRIDE}`;
}

/** Default profiles: gpu when a GPU and the nvidia runtime are present, plus linux on Linux. */
export function defaultProfiles(
  gpu: { state: string; nvidiaRuntime: boolean },
  os: string,
): string[] {
  const p: string[] = [];
  if (gpu.state === "ok" && gpu.nvidiaRuntime) p.push("gpu");
  if (os === "linux") p.push("linux");
  return p;
}

/** Cortex versions compared numerically ("0.10.0" > "0.9.1"); non-numeric parts by text. */
export function compareReleases(a: string, b: string): number {
  const pa = a.replace(/^v/, "").split(/[.+-]/);
  const pb = b.replace(/^v/, "").split(/[.+-]/);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const x = pa[i] ?? "0";
    const y = pb[i] ?? "0";
    const nx = Number(x);
    const ny = Number(y);
    const c = !isNaN(nx) && !isNaN(ny) ? nx - ny : x.localeCompare(y);
    if (c !== 0) return Math.sign(c);
  }
  return 0;
}

/** Reads and validates everything and computes the plan. Writes nothing. */
async function prepare(
  ctx: Context,
  o: InstallOptions,
  journal: Journal,
  release: ReleaseManifest,
  bundle: Bundle,
  digest: string,
): Promise<Prepared> {
  // Cortex 0.2's settings, secrets and models are not installed yet (their planning modules live
  // in src/host/); refuse before anything is written rather than install it the 0.1 way.
  if (bundle.line !== undefined && bundle.line !== "0.1") {
    throw preflightError(
      "preflight",
      `Cannot install "${bundle.dir}" yet: it is a Cortex ${bundle.line} bundle, and install writes only Cortex 0.1's settings`,
      "`cortex-install verify`, `load` and `doctor --bundle` work on it today.",
    );
  }
  // Fail closed before anything is written: every image tar, archive and model file must be
  // covered by a checksum or a pin (load and models check again as they read).
  if (bundle.unlisted.length > 0 && !o.allowUnlisted && !o.noVerify) {
    throw integrityError(
      `Cannot install from "${bundle.dir}": no checksum or pin covers ${
        bundle.unlisted.map((u) => `"${u}"`).join(", ")
      }`,
      `Add ${
        bundle.unlisted.length > 1 ? "them" : "it"
      } to ${CHECKSUMS_FILE} on the source host, or pass --allow-unlisted to install unverified files.`,
    );
  }
  const cur = currentRelease(journal);
  const releaseName = bundle.cortexVersion ?? release.release;
  if (cur && cur.bundleDigest !== digest && !o.allowDowngrade) {
    if (compareReleases(releaseName, cur.release) < 0) {
      throw preflightError(
        "preflight",
        `Cannot install Cortex ${releaseName}: it is older than the installed ${cur.release}`,
        "Pass --allow-downgrade to install it anyway, or use `cortex-install rollback`.",
      );
    }
  }

  // The index of every image tar (cheap: headers only, seeking past layers).
  const indexes = new Map<string, TarIndex>();
  for (const img of bundle.images) {
    throwIfAborted(ctx.signal);
    try {
      indexes.set(img.file, await readTarIndex(`${bundle.dir}/${img.file}`));
    } catch (e) {
      if (img.critical || !(e instanceof InstallError)) throw e;
      ctx.log.warn(`Optional image "${img.file}" cannot be read and will be skipped: ${e.message}`);
    }
  }

  const expected = new Map<string, string>();
  for (const f of bundle.files) if (f.expected) expected.set(f.path, f.expected.sha256);
  const modelPlan = o.skipModels ? undefined : await planModels(bundle.models, {
    modelsDir: o.modelsDir,
    hfCacheDir: o.hfCacheDir,
    bundleDir: bundle.dir,
    expected,
    // Installed model files hashed by an earlier run and unchanged since (stat) are not re-read.
    knownDigest: (path, st) => verifiedSha256(journal, path, st),
  });
  const modelBytes = modelPlan?.items.reduce(
    (s, i) => s + (i.action === "copy" || i.action === "extract" ? i.writeBytes : 0),
    0,
  );

  // Disk for images: only what `docker load` will unpack (layers the engine has go empty).
  const present0 = await engineImages(ctx);
  const skip = await layerSkipSupport(ctx);
  const chains = skip.enabled ? await engineChains(ctx) : undefined;
  let imageBytes = 0;
  for (const img of bundle.images) {
    const idx = indexes.get(img.file);
    if (!idx) continue;
    const refs = idx.images.flatMap((i) => i.repoTags);
    const isPresent = refs.length > 0 &&
      idx.images.every((i) => i.repoTags.every((r) => present0.get(canonical(r)) === i.imageId));
    if (!isPresent) imageBytes += newLayerBytes(idx, chains);
  }

  ctx.log.info("Preflight: Docker, Compose, disk, GPU, network, ports");
  const doctor = await runDoctor(ctx, {
    bundle,
    network: o.network,
    composeFile: o.composeFile,
    composeProject: o.project,
    modelsDir: o.modelsDir,
    hfCacheDir: o.hfCacheDir,
    stateDir: o.stateDir,
    modelBytes,
    imageBytes,
  });
  const failed = doctor.checks.filter((c) => c.status === "fail");
  if (failed.length > 0) {
    throw preflightError(
      "preflight",
      `Preflight failed: ${failed.map((c) => `${c.title}: ${c.detail}`).join("; ")}`,
      failed.map((c) => c.hint).filter(Boolean).join(" ") ||
        "Run `cortex-install doctor` for details.",
    );
  }
  const profiles = o.profiles ?? defaultProfiles(doctor.gpu, Deno.build.os);
  const composeMajor = doctor.compose?.major ?? 2;

  // Images compose will run, after the load: shipped, present, or retagged.
  const present = present0;
  const available: AvailableImage[] = [];
  const shippedRoles: { role: string; ref: string }[] = [];
  const planImagesList: InstallPlan["images"] = [];
  for (const img of bundle.images) {
    const idx = indexes.get(img.file);
    if (!idx) continue;
    for (const ti of idx.images) {
      const refs = ti.repoTags.length ? ti.repoTags : img.declaredRefs;
      for (const ref of refs) available.push({ ref, imageId: ti.imageId, origin: "shipped" });
      if (img.role && refs[0]) shippedRoles.push({ role: img.role, ref: refs[0] });
      const isPresent = refs.length > 0 &&
        refs.every((r) => present.get(canonical(r)) === ti.imageId);
      planImagesList.push({
        file: img.file,
        refs,
        imageId: ti.imageId,
        action: isPresent ? "present" : "load",
        critical: img.critical,
      });
    }
  }
  for (const [ref, imageId] of present) available.push({ ref, imageId, origin: "present" });

  // Settings first (they decide the root .env that compose interpolates), then compose.
  const composeSrc = await readComposeSource(o.composeFile);
  // The root .env we write can change image refs that compose interpolates, and the override
  // pins what compose will run: plan the settings, read compose with the root .env as it will
  // be, and plan the settings again if that changed any service's image (the root .env itself
  // does not depend on the services, so this settles in one more round).
  const parse = (dotenvText: string | undefined) =>
    parseCompose(o.composeFile, composeSrc.text, { env: ctx.envAll(), profiles, dotenvText });
  const settingsFor = (p: ImagePlan) =>
    planSettings({
      cortexDir: o.cortexDir,
      network: doctor.network.mode,
      release,
      shippedImages: shippedRoles,
      modelsDir: o.modelsDir,
      hfCacheDir: o.hfCacheDir,
      composeFile: o.composeFile,
      services: Object.fromEntries(p.needs.map((n) => [n.service, { image: n.ref }])),
    });
  const imagePlan0 = planImages(parse(composeSrc.dotenvText), available, { composeMajor });
  let settingsPlan = await settingsFor(imagePlan0);
  const rootAfter = settingsPlan.files.find((f) => f.kind === "root-env")?.after;
  const model = parse(rootAfter ?? composeSrc.dotenvText);
  const imagePlan = planImages(model, available, { composeMajor });
  const refs = (p: ImagePlan) => p.needs.map((n) => `${n.service}=${n.ref}`).sort().join(" ");
  if (refs(imagePlan) !== refs(imagePlan0)) settingsPlan = await settingsFor(imagePlan);
  if (imagePlan.missing.length > 0) {
    const m = imagePlan.missing.map((x) => `service "${x.service}" needs "${x.ref}"`).join("; ");
    throw preflightError(
      "preflight",
      `Cannot start the stack: ${m}, which the bundle does not ship and the engine does not have`,
      "Use a bundle that ships these images, or leave the service's profile out with --profiles.",
    );
  }

  const readiness = release.readiness.filter((r) =>
    model.services.some((s) => s.name === r.service)
  );
  const cur2 = currentRelease(journal);
  const plan: InstallPlan = {
    bundle: {
      dir: bundle.dir,
      format: bundle.format,
      digest,
      release: releaseName,
      warnings: bundle.warnings,
    },
    installed: cur2
      ? { release: cur2.release, bundleDigest: cur2.bundleDigest, installedAt: cur2.installedAt }
      : undefined,
    upgrade: !!cur2 && cur2.bundleDigest !== digest,
    resume: !!journal.inProgress,
    network: doctor.network,
    gpu: {
      state: doctor.gpu.state,
      driverVersion: doctor.gpu.driverVersion,
      cudaVersion: doctor.gpu.cudaVersion,
      gpus: doctor.gpu.gpus.length,
      nvidiaRuntime: doctor.gpu.nvidiaRuntime,
    },
    profiles,
    checks: doctor.checks,
    disk: doctor.disk,
    images: planImagesList,
    retags: imagePlan.needs.filter((n) => n.source === "retag").map((n) => ({
      service: n.service,
      from: n.from!,
      to: n.ref,
    })),
    services: model.services.map((s) => ({
      name: s.name,
      image: imagePlan.needs.find((n) => n.service === s.name)?.ref,
    })),
    settings: settingsPlan.files.map((f) => ({
      path: f.path,
      changed: f.changed,
      keys: f.keys.map((k) => ({ key: k.key, old: k.old, new: k.new })),
    })),
    models: (modelPlan?.items ?? []).map((i) => ({
      name: i.name,
      target: i.target,
      action: i.action,
      bytes: i.bytes,
    })),
  };
  return {
    release,
    bundle,
    digest,
    indexes,
    doctor,
    profiles,
    imagePlan,
    settingsPlan,
    modelPlan,
    readiness,
    plan,
  };
}

/** The writes, in order. */
async function execute(
  ctx: Context,
  o: InstallOptions,
  journal: Journal,
  p: Prepared,
  durations: Record<string, number>,
  verdicts: Verdict[],
): Promise<InstallReport> {
  const previous = p.plan.upgrade ? currentRelease(journal) : undefined;
  beginRun(journal, p.digest, Deno.pid, ctx.now());
  await writeJournal(o.stateDir, journal);
  const step = async <T>(name: string, f: () => Promise<T>): Promise<T> => {
    recordStep(journal, name, "running");
    await writeJournal(o.stateDir, journal);
    const r = await timed(durations, name, f);
    recordStep(journal, name, "done");
    await writeJournal(o.stateDir, journal);
    return r;
  };

  // Progress: one byte-weighted total over what will be read (load and other files); models add theirs.
  // Images are hashed while loaded, models while copied, archives while extracted; the rest
  // (db dump, manifests, a listed tar the manifest does not name) is verified here, and a
  // listed file that is missing fails the run, before anything is loaded.
  const imageFiles = new Set(p.bundle.images.map((i) => i.file));
  const others = p.bundle.files.filter((f) =>
    !imageFiles.has(f.path) && f.kind !== "model" && f.kind !== "archive"
  );
  const missing = p.bundle.missing.filter((m) => !imageFiles.has(m));
  // A file hashed by an earlier run and unchanged since (size, mtime, inode, ctime) is trusted.
  const toHash: typeof others = [];
  const stats = new Map<string, Deno.FileInfo>();
  for (const f of others) {
    const st = await Deno.stat(f.abs).catch(() => undefined);
    if (st) stats.set(f.abs, st);
    if (st && f.expected && verifiedSha256(journal, f.abs, st) === f.expected.sha256) {
      verdicts.push({ path: f.path, verdict: "cached", sha256: f.expected.sha256 });
    } else {
      toHash.push(f);
    }
  }
  let files: VerifyReport["files"] = [];
  if ((toHash.length > 0 || missing.length > 0) && !o.noVerify) {
    const hashedAt = ctx.now();
    const v = await step(
      "verify",
      () =>
        verifyBundle(ctx, { ...p.bundle, files: toHash, images: [], unlisted: [], missing }, {
          allowUnlisted: o.allowUnlisted,
        }),
    );
    files = v.files;
    for (const f of v.files) {
      verdicts.push({ path: f.path, verdict: f.verdict, sha256: f.actual });
      const abs = toHash.find((x) => x.path === f.path)?.abs;
      const st = abs ? stats.get(abs) : undefined;
      if (abs && st && f.verdict === "ok" && f.actual) {
        markVerified(journal, abs, st, f.actual, hashedAt);
      }
    }
    assertVerified(v);
  }

  const images = await step(
    "load",
    () =>
      loadImages(ctx, p.bundle, {
        allowUnlisted: o.allowUnlisted,
        noVerify: o.noVerify,
        indexes: p.indexes,
      }),
  );
  for (const img of images.images) {
    verdicts.push({
      path: img.file,
      verdict: img.verdict === "present" ? "skipped" : img.verdict === "loaded" ? "ok" : "failed",
      sha256: img.sha256,
      detail: img.message,
    });
    if (img.imageId) { for (const r of img.refs) recordLoaded(journal, r, img.imageId); }
  }

  const retags = await step("retag", async () => {
    const done: InstallPlan["retags"] = [];
    for (const n of p.imagePlan.needs) {
      if (n.source !== "retag" || !n.from) continue;
      await tagImage(n.from, n.ref, ctx.docker);
      done.push({ service: n.service, from: n.from, to: n.ref });
    }
    return done;
  });

  let models: ModelsResult | undefined;
  if (p.modelPlan) {
    const mp = p.modelPlan;
    models = await step("models", async () => {
      const cleaned = await cleanStaging(o.modelsDir, o.hfCacheDir);
      for (const c of cleaned) {
        ctx.log.info(`Removed the staging leftover of an interrupted run: ${c}`);
      }
      return await seedModels(ctx, mp, {
        link: o.link,
        onVerified: (m) => {
          for (const f of m.files) markVerified(journal, f.path, f.stat, f.sha256, f.verifiedAt);
        },
      });
    });
    // Model folders in place, for status and the re-run check (which stats each target).
    for (const m of models.models) {
      if (m.verdict !== "copied" && m.verdict !== "linked" && m.verdict !== "skipped") continue;
      const item = mp.items.find((i) => i.target === m.target && i.name === m.name);
      const lines = (item?.files ?? []).map((f) => `${f.expected ?? ""}  ${f.rel}\n`).sort();
      recordModel(journal, m.target, {
        files: m.files,
        bytes: m.bytes,
        sha256Tree: sha256Hex(new TextEncoder().encode(lines.join(""))),
      });
    }
    await writeJournal(o.stateDir, journal);
  }

  const settings = await step("settings", () => applySettings(p.settingsPlan));
  const envFiles: Release["envFiles"] = {};
  for (const f of settings.files) {
    const sha = await sha256OfFile(f.path);
    const prevBackup = previous?.envFiles[f.path]?.backup;
    if (sha) {
      envFiles[f.path] = { sha256: sha, backup: f.backup ?? (f.changed ? undefined : prevBackup) };
    }
  }

  // Images of the release, by ref, for rollback and the re-run check.
  const engine = await engineImages(ctx);
  const releaseImages: Record<string, string> = {};
  for (const i of p.plan.images) {
    for (const r of i.refs) {
      const id = engine.get(canonical(r));
      if (id) releaseImages[r] = id;
    }
  }
  for (const n of p.imagePlan.needs) {
    const id = engine.get(canonical(n.ref));
    if (id) releaseImages[n.ref] = id;
  }
  const engineRefs: Record<string, string> = {};
  for (const img of p.bundle.images) {
    const idx = p.indexes.get(img.file);
    if (img.role && idx?.images[0]?.repoTags[0]) engineRefs[img.role] = idx.images[0].repoTags[0];
  }

  const stackRecord = {
    cortexDir: o.cortexDir,
    composeFile: o.composeFile,
    project: o.project,
    profiles: p.profiles,
    readiness: p.readiness,
  };
  const inputs = await installInputs(o);
  const thisRelease = (outcome: Release["outcome"]): Release => ({
    release: p.plan.bundle.release ?? "unknown",
    bundleDigest: p.digest,
    bundleDir: p.bundle.dir,
    installedAt: ctx.now().toISOString(),
    engineRefs,
    images: releaseImages,
    envFiles,
    override: overridePath(o),
    outcome,
    stack: stackRecord,
    inputs,
  });
  let stack: StackResult | undefined;
  if (!o.skipStart) {
    try {
      stack = await step("stack", () =>
        startStack(ctx, {
          cortexDir: o.cortexDir,
          files: [o.composeFile, overridePath(o)],
          project: o.project,
          profiles: p.profiles,
          readiness: p.readiness,
          waitTimeoutSec: o.waitTimeoutSec,
        }));
    } catch (e) {
      if (previous && e instanceof InstallError && e.exitCode === ExitCode.Stack) {
        ctx.log.warn(`The updated stack did not become healthy: ${e.message}`);
        ctx.log.warn(`Rolling back to Cortex ${previous.release}`);
        const failedIdx = recordRelease(journal, thisRelease("failed"));
        await writeJournal(o.stateDir, journal);
        try {
          await rollbackTo(ctx, journal, {
            stateDir: o.stateDir,
            cortexDir: o.cortexDir,
            composeFile: o.composeFile,
            project: o.project,
            profiles: p.profiles,
            waitTimeoutSec: o.waitTimeoutSec,
            readiness: p.readiness,
            from: failedIdx,
          });
        } catch (re) {
          throw stackError(
            `The update to Cortex ${p.plan.bundle.release} failed (${e.message}) and the rollback to ${previous.release} failed too: ${
              (re as Error).message
            }`,
            "Run `cortex-install status` and `cortex-install rollback`.",
            e.detail,
          );
        }
        throw stackError(
          `The update to Cortex ${p.plan.bundle.release} failed: ${e.message}. The host was rolled back to Cortex ${previous.release}, which is healthy.`,
          "The logs of the failing service are below. Fix the cause and run the update again.",
          e.detail,
        );
      }
      throw e;
    }
  }

  recordRelease(journal, thisRelease("installed"));
  await writeJournal(o.stateDir, journal);

  return {
    command: "install",
    ok: true,
    outcome: "installed",
    plan: p.plan,
    network: p.plan.network,
    gpu: p.plan.gpu,
    images,
    retags,
    files,
    models,
    settings,
    stack,
    urls: stack?.urls,
    durations,
  };
}
