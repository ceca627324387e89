/**
 * The preflight of `install`: read the bundle, the journal, the compose file and the host
 * (Docker, Compose, disk, GPU, network, ports), validate everything and compute the whole plan.
 * Nothing is written; any failure here exits 3 ("nothing was changed"). The steps that follow
 * (INSTALL_STEPS) only act on what it prepared.
 */
import type { Context } from "../context.ts";
import type { Bundle, TarIndex } from "../bundle/types.ts";
import { readTarIndex } from "../bundle/tarindex.ts";
import type { ReleaseManifest } from "../bundle/release.ts";
import { runDoctor } from "../doctor/mod.ts";
import { InstallError, integrityError, preflightError, throwIfAborted } from "../errors.ts";
import {
  type AvailableImage,
  type ImagePlan,
  parseCompose,
  planImages,
  readComposeSource,
} from "../host/compose.ts";
import { planSettings } from "../host/settings.ts";
import { planModels } from "../host/models/plan.ts";
import { planDatabase } from "../host/database.ts";
import {
  engineChains,
  engineImages,
  layerSkipSupport,
  newLayerBytes,
  presentInEngine,
} from "../images/load.ts";
import { currentRelease, type Journal, verifiedSha256 } from "../state/journal.ts";
import { CHECKSUMS_FILE } from "../layout.ts";
import type { InstallOptions, InstallPlan, Prepared } from "./types.ts";

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

/** What the install read before the preflight (the re-run check needs them first). */
export interface PreflightInputs {
  journal: Journal;
  release: ReleaseManifest;
  bundle: Bundle;
  /** The bundle's digest (bundleDigest). */
  digest: string;
}

/**
 * Reads and validates everything and computes the plan (see the module comment). Writes
 * nothing; throws a preflight error (exit 3), or an integrity error (exit 4) for an unlisted file.
 */
export async function preflight(
  ctx: Context,
  o: InstallOptions,
  { journal, release, bundle, digest }: PreflightInputs,
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
  const present = await engineImages(ctx);
  const skip = await layerSkipSupport(ctx);
  const chains = skip.enabled ? await engineChains(ctx) : undefined;
  let imageBytes = 0;
  for (const img of bundle.images) {
    const idx = indexes.get(img.file);
    if (!idx) continue;
    if (!presentInEngine(idx.images, img.declaredRefs, present)) {
      imageBytes += newLayerBytes(idx, chains);
    }
  }

  // The database: a backup before an upgrade, the bundle's dump on a fresh install (what and why).
  const database = await planDatabase(ctx, {
    stateDir: o.stateDir,
    project: o.project,
    skipDb: o.skipDb,
    restoreDb: o.restoreDb,
    skipStart: o.skipStart,
    allowUnverified: o.allowUnlisted || o.noVerify,
    upgrade: !!cur && cur.bundleDigest !== digest,
    digest,
    bundle,
    journal,
    current: cur,
  });

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
    dbBackupBytes: database.disk.backupBytes,
    dbRestoreBytes: database.disk.restoreBytes,
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
      planImagesList.push({
        file: img.file,
        refs,
        imageId: ti.imageId,
        action: presentInEngine([ti], img.declaredRefs, present) ? "present" : "load",
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
    database,
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
    database,
  };
}
