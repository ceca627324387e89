/**
 * The preflight of `install`: read the bundle, the journal, the compose file and the host
 * (Docker, Compose, disk, GPU, network, ports), validate everything and compute the whole plan.
 * Nothing is written; any failure here exits 3 ("nothing was changed"), or 4 for an integrity
 * problem found without reading data (a missing tar, images.json against checksums.sha256, an
 * unsafe model path, a model file of the wrong size). The steps that follow (INSTALL_STEPS)
 * only act on what it prepared.
 *
 * The release line's policy decides where settings go: Cortex 0.1's backend/.env + root .env +
 * override `env_file` (host/settings.ts), or Cortex 0.2's root .env + override `environment:`
 * (host/settings02_files.ts), whose secrets, first admin, CORS and `:?` keys are checked here,
 * and whose files, as they will be, `docker compose config` validates before the first write.
 */
import type { Context } from "../context.ts";
import type { Bundle, TarIndex } from "../bundle/types.ts";
import { readTarIndex } from "../bundle/tarindex.ts";
import {
  type PolicyChoice,
  readinessUrl,
  refusedComposeFile,
  type ReleaseManifest,
} from "../bundle/release.ts";
import type { ComposeCli } from "../docker.ts";
import { runDoctor } from "../doctor/mod.ts";
import { InstallError, integrityError, preflightError, throwIfAborted } from "../errors.ts";
import {
  type AvailableImage,
  type ImagePlan,
  parseCompose,
  planImages,
  readComposeSource,
} from "../host/compose.ts";
import { planSettings, type SettingsPlan } from "../host/settings.ts";
import { type Settings02Plan, settings02Report } from "../host/settings02.ts";
import {
  planSettingsFiles02,
  type Settings02Files,
  settingsLookup,
} from "../host/settings02_files.ts";
import { ADMIN_PASSWORD_KEY, noPasswordError } from "../host/admin.ts";
import { generateSecret } from "../host/secrets.ts";
import { type CheckoutVersions, preferredEngineRefs } from "../host/checkout.ts";
import { envRecord, parseEnv } from "../host/dotenv.ts";
import { validateCompose } from "../host/stack.ts";
import { planWheels } from "../host/wheels.ts";
import { planModels } from "../host/models/plan.ts";
import { planDatabase } from "../host/database.ts";
import { planRegister } from "../host/register.ts";
import { type Carry01, isUpgrade01to02 } from "../host/upgrade01.ts";
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

/**
 * The Cortex dir must be a checkout: its `backend/` folder holds the env files the compose file
 * reads (`backend/.env.prod`) and the settings step writes (`backend/.env`). Without it the run
 * would load images and write settings, then fail at `compose up`: refuse it before any write.
 */
export async function requireCheckout(cortexDir: string): Promise<void> {
  let detail: string | undefined;
  try {
    if (!(await Deno.stat(`${cortexDir}/backend`)).isDirectory) detail = "backend is not a folder";
  } catch (e) {
    detail = e instanceof Deno.errors.NotFound
      ? "it has no backend/ folder"
      : `cannot read its backend/ folder: ${(e as Error).message}`;
  }
  if (detail) {
    throw preflightError(
      "preflight",
      `Cannot use the Cortex dir "${cortexDir}": ${detail}`,
      "Pass the Cortex checkout (the folder with the compose files and backend/) with --cortex-dir.",
    );
  }
}

const parentOf = (p: string) => p.slice(0, p.lastIndexOf("/")) || "/";

/**
 * Checks that a folder the run will write into can be written, by creating and removing a
 * hidden probe file in it (the only way to know: modes, ACLs, read-only mounts and root squash
 * all decide). A folder that does not exist yet is checked where it will be created.
 */
export async function requireWritable(dir: string, what: string): Promise<void> {
  let at = dir;
  for (;;) {
    try {
      await Deno.stat(at);
      break;
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound) || at === "/") break;
      at = parentOf(at);
    }
  }
  try {
    const probe = await Deno.makeTempFile({ dir: at, prefix: ".cortex-install-probe-" });
    await Deno.remove(probe);
  } catch (e) {
    const code = (e as { code?: string }).code;
    const why = code === "EROFS"
      ? "it is on a read-only filesystem"
      : code === "EACCES" || code === "EPERM" || e instanceof Deno.errors.PermissionDenied
      ? `this user (uid ${Deno.uid() ?? "?"}) may not write there`
      : code === "ENOSPC"
      ? "its filesystem is full"
      : (e as Error).message;
    throw preflightError(
      "preflight",
      `Cannot write into the ${what} "${dir}"${
        at === dir ? "" : ` (it would be created in "${at}")`
      }: ${why}`,
      `Make it writable for this user, or pass another folder (${
        what === "models dir" ? "--models-dir" : "--hf-cache-dir"
      }), then run again.`,
    );
  }
}

/** What the install read before the preflight (the re-run check needs them first). */
export interface PreflightInputs {
  journal: Journal;
  /** The policy of the bundle's release line (see selectPolicy). */
  release: ReleaseManifest;
  policy: PolicyChoice;
  bundle: Bundle;
  /** The bundle's digest (bundleDigest). */
  digest: string;
  /** What the checkout's versions files say (VLLM_IMAGE preferred among engine builds). */
  checkout?: CheckoutVersions;
  /** Cortex 0.1 -> 0.2 in place: the settings carried from backend/.env (upgrade01.ts). */
  carry?: Carry01;
}

/** A secret generator that gives the same values to every plan of one preflight. */
function stableSecrets(): () => () => string {
  const pool: string[] = [];
  return () => {
    let i = 0;
    return () => (pool[i] ??= generateSecret(), pool[i++]);
  };
}

/**
 * Reads and validates everything and computes the plan (see the module comment). Writes
 * nothing; throws a preflight error (exit 3), an integrity error (exit 4), or a usage error
 * (exit 2: Cortex 0.2 needs the first admin's password and nothing may ask for it).
 */
export async function preflight(
  ctx: Context,
  o: InstallOptions,
  { journal, release, policy, bundle, digest, checkout, carry }: PreflightInputs,
): Promise<Prepared> {
  const line02 = release.settings.mode === "root-env";
  // Integrity problems found while reading the bundle (0.2: images.json against
  // checksums.sha256, unsafe model paths): nothing is written from such a bundle. An unsafe
  // model path is refused even with --no-verify, as an unsafe archive entry is.
  const problems = bundle.problems ?? [];
  const fatal = problems.filter((p) => !o.noVerify || p.verdict === "unsafe");
  if (fatal.length > 0) {
    throw integrityError(
      fatal.length === 1
        ? fatal[0].message
        : `Cannot install from "${bundle.dir}": ${fatal.length} integrity problems: ${
          fatal.map((p) => `"${p.path}"`).join(", ")
        }`,
      fatal[0].hint,
      fatal.length > 1 ? fatal.map((p) => p.message).join("\n") : undefined,
    );
  }
  for (const p of problems) {
    if (!fatal.includes(p)) ctx.log.warn(`${p.message} (ignored: --no-verify)`);
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
  const refused = refusedComposeFile(release, o.composeFile);
  if (refused) {
    throw preflightError(
      "preflight",
      `Cannot run "${o.composeFile}" with a Cortex ${
        policy.version ?? release.release
      } bundle: ${refused}`,
      `Run ${
        release.compose.run ?? "the production compose file"
      } (leave --compose-file out, or pass it).`,
    );
  }
  await requireCheckout(o.cortexDir);
  const cur = currentRelease(journal);
  const releaseName = policy.version ?? bundle.cortexVersion ?? release.release;
  if (cur && cur.bundleDigest !== digest && !o.allowDowngrade) {
    if (compareReleases(releaseName, cur.release) < 0) {
      throw preflightError(
        "preflight",
        `Cannot install Cortex ${releaseName}: it is older than the installed ${cur.release}`,
        "Pass --allow-downgrade to install it anyway, or use `cortex-install rollback`.",
      );
    }
  }

  // A critical image tar that is not there fails before anything is written (an optional one
  // is skipped, with a warning).
  const imageFiles = new Map(bundle.files.map((f) => [f.path, f]));
  const absent = bundle.images.filter((i) => imageFiles.get(i.file)?.size === undefined);
  const absentCritical = absent.filter((i) => i.critical);
  if (absentCritical.length > 0 && !o.noVerify) {
    throw integrityError(
      `Cannot install from "${bundle.dir}": ${
        absentCritical.map((i) => `"${i.file}"`).join(", ")
      } ${absentCritical.length > 1 ? "are" : "is"} missing from the bundle`,
      "Copy it from the transfer media (the bundle lists it), then run again.",
    );
  }

  // The index of every image tar (cheap: headers only, seeking past layers).
  const indexes = new Map<string, TarIndex>();
  for (const img of bundle.images) {
    throwIfAborted(ctx.signal);
    if (absent.includes(img)) continue;
    try {
      indexes.set(
        img.file,
        await readTarIndex(`${bundle.dir}/${img.file}`, { signal: ctx.signal }),
      );
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
  // A target that cannot be written (read-only mount, another owner) fails here, not mid-copy.
  const writes = new Map<string, string>();
  for (const i of modelPlan?.items ?? []) {
    if (i.writeBytes <= 0) continue;
    if (i.target === o.hfCacheDir) writes.set(o.hfCacheDir, "HF cache dir");
    else writes.set(o.modelsDir, "models dir");
  }
  for (const [dir, what] of writes) await requireWritable(dir, what);
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

  const preferred = preferredEngineRefs(checkout?.values ?? {});
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
    compose: o.compose,
    preferredEngineRefs: preferred,
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
  const compose: ComposeCli = doctor.compose ??
    { cmd: ["docker", "compose"], version: "?", major: 2 };
  if (line02 && compose.major === 1) {
    throw preflightError(
      "preflight",
      `Cannot run Cortex ${releaseName} with ${compose.cmd.join(" ")} ${compose.version}: ` +
        "Compose v1 refuses Cortex 0.2's compose files (their top-level name: and " +
        "deploy.resources.limits.pids)",
      "Install Compose v2 (the docker-compose-plugin package, or Debian trixie's docker-compose " +
        "as a CLI plugin: `docker compose version` must answer), then run again" +
        (o.compose === "v1" ? " without --compose v1." : "."),
    );
  }
  const profiles = o.profiles ?? defaultProfiles(doctor.gpu, Deno.build.os);
  const composeMajor = compose.major;

  // Several builds of one engine: the one this driver runs is loaded, the others are not.
  const engines = doctor.gpu.engines;
  const notNeeded = new Map<string, string>();
  for (const e of engines?.engines ?? []) {
    if (!e.chosen) continue;
    for (const v of e.notNeeded) {
      notNeeded.set(
        v.file,
        `not needed on this host ("${e.chosen.ref}" runs here: ${e.chosen.detail})`,
      );
    }
  }

  // Images compose will run, after the load: shipped, present, or retagged.
  const available: AvailableImage[] = [];
  const shippedRoles: { role: string; ref: string }[] = [];
  const planImagesList: InstallPlan["images"] = [];
  for (const img of bundle.images) {
    const idx = indexes.get(img.file);
    if (!idx) continue;
    for (const ti of idx.images) {
      const refs = ti.repoTags.length ? ti.repoTags : img.declaredRefs;
      const skipped = notNeeded.has(img.file);
      const known = img.tagDeclared ? [...new Set([...refs, ...img.declaredRefs])] : refs;
      if (!skipped) {
        for (const ref of known) available.push({ ref, imageId: ti.imageId, origin: "shipped" });
        const roleRef = img.tagDeclared ? img.declaredRefs[0] ?? refs[0] : refs[0];
        if (img.role && roleRef) shippedRoles.push({ role: img.role, ref: roleRef });
      }
      planImagesList.push({
        file: img.file,
        refs: known,
        imageId: ti.imageId,
        action: skipped
          ? "not-needed"
          : presentInEngine([ti], img.declaredRefs, present)
          ? "present"
          : "load",
        critical: img.critical,
      });
    }
  }
  // Without a choice by driver, the build the checkout's versions.env names goes to VLLM_IMAGE.
  shippedRoles.sort((a, b) =>
    Number(preferred.includes(b.ref)) - Number(preferred.includes(a.ref))
  );
  for (const [ref, imageId] of present) available.push({ ref, imageId, origin: "present" });

  // Settings first (they decide the root .env that compose interpolates), then compose.
  const composeSrc = await readComposeSource(o.composeFile);
  const secrets = stableSecrets();
  let adminPassword: string | undefined;
  let s02: Settings02Files | undefined;
  // The root .env we write can change image refs that compose interpolates, and the override
  // pins what compose will run: plan the settings, read compose with the root .env as it will
  // be, and plan the settings again if that changed any service's image (the root .env itself
  // does not depend on the services, so this settles in one more round).
  const settingsFor = async (p: ImagePlan): Promise<SettingsPlan> => {
    const services = Object.fromEntries(p.needs.map((n) => [n.service, { image: n.ref }]));
    if (!line02) {
      return await planSettings({
        cortexDir: o.cortexDir,
        network: doctor.network.mode,
        release,
        shippedImages: shippedRoles,
        modelsDir: o.modelsDir,
        hfCacheDir: o.hfCacheDir,
        composeFile: o.composeFile,
        services,
      });
    }
    s02 = await planSettingsFiles02({
      cortexDir: o.cortexDir,
      composeFile: o.composeFile,
      policy: release,
      network: doctor.network.mode,
      modelsDir: o.modelsDir,
      hfCacheDir: o.hfCacheDir,
      shippedImages: shippedRoles,
      env: ctx.env,
      admin: {
        ...o.admin,
        ...(adminPassword !== undefined ? { passwordFromPrompt: adminPassword } : {}),
      },
      ...(o.corsOrigin !== undefined ? { corsOrigin: o.corsOrigin } : {}),
      hostname: hostname(),
      generate: secrets(),
      services,
      ...(carry ? { carried: carry.values } : {}),
    });
    return s02.settings;
  };
  const parse = (dotenvText: string | undefined) => {
    const env = ctx.envAll();
    // A plan without the first admin's password still reads compose (install asks for it).
    if (line02 && o.dryRun && s02?.detail.needsAdminPassword) env[ADMIN_PASSWORD_KEY] ??= "-";
    return parseCompose(o.composeFile, composeSrc.text, { env, profiles, dotenvText });
  };
  const none: ImagePlan = { needs: [], missing: [] };
  let settingsPlan = await settingsFor(none);
  if (line02 && s02!.detail.needsAdminPassword && !o.dryRun) {
    if (!o.askAdminPassword) throw noPasswordError();
    adminPassword = await o.askAdminPassword({
      user: s02!.detail.admin.user,
      production: s02!.detail.production,
    });
    settingsPlan = await settingsFor(none);
  }
  if (line02) checkSettings02(s02!.detail, o.dryRun);
  const rootAfter = () => settingsPlan.files.find((f) => f.kind === "root-env")?.after;
  const imagePlan0 = planImages(parse(rootAfter() ?? composeSrc.dotenvText), available, {
    composeMajor,
  });
  settingsPlan = await settingsFor(imagePlan0);
  const model = parse(rootAfter() ?? composeSrc.dotenvText);
  const imagePlan = planImages(model, available, { composeMajor });
  const refs = (p: ImagePlan) => p.needs.map((n) => `${n.service}=${n.ref}`).sort().join(" ");
  if (refs(imagePlan) !== refs(imagePlan0)) settingsPlan = await settingsFor(imagePlan);
  if (imagePlan.missing.length > 0 && !o.skipStart) {
    const m = imagePlan.missing.map((x) => `service "${x.service}" needs "${x.ref}"`).join("; ");
    throw preflightError(
      "preflight",
      `Cannot start the stack: ${m}, which the bundle does not ship and the engine does not have`,
      "Use a bundle that ships these images, or leave the service's profile out with --profiles.",
    );
  }

  // Cortex 0.2: compose itself reads the files as they will be, before anything is written.
  const lookup = (k: string) =>
    line02 && s02 ? settingsLookup(s02, ctx.env)(k) : ctx.env(k) ?? envValue(rootAfter(), k);
  if (line02) {
    const env = rootAfter() ?? "";
    await validateCompose(ctx, {
      cli: compose,
      cortexDir: o.cortexDir,
      project: o.project,
      profiles,
      composeFile: o.composeFile,
      overrideText: settingsPlan.files.find((f) => f.kind === "override")!.after,
      // A plan without the password still validates everything else.
      envText: o.dryRun && s02!.detail.needsAdminPassword
        ? `${env}${env.endsWith("\n") || env === "" ? "" : "\n"}${ADMIN_PASSWORD_KEY}=-\n`
        : env,
    });
  }

  const readiness = release.readiness
    .filter((r) => model.services.some((s) => s.name === r.service))
    .map((r) => ({
      service: r.service,
      url: readinessUrl(r, lookup),
      ...(r.expectJson ? { expectJson: r.expectJson } : {}),
    }));
  const wheels = await planWheels(bundle, o.cortexDir);
  // Cortex 0.2: the bundle's model records, registered through the gateway after `stack`; a
  // bundle the gateway cannot see is refused here, before anything is written.
  const register = line02
    ? await planRegister({
      bundle,
      gateway: model.services.find((s) => s.name === "gateway"),
      readinessUrl: readiness.find((r) => r.service === "gateway")?.url,
      conflict: o.modelConflict,
      user: s02!.detail.admin.user,
      skip: o.skipStart
        ? "--skip-start: the stack is not started"
        : o.skipRegister
        ? "--skip-register"
        : o.skipModels
        ? "--skip-models: the model files are not seeded"
        : undefined,
    })
    : {};
  const cur2 = currentRelease(journal);
  const plan: InstallPlan = {
    bundle: {
      dir: bundle.dir,
      format: bundle.format,
      digest,
      release: releaseName,
      warnings: [...bundle.warnings, ...policy.warnings],
    },
    policy: {
      line: policy.line,
      ...(policy.version ? { version: policy.version } : {}),
      decidedBy: policy.decidedBy,
    },
    compose: { cmd: compose.cmd.join(" "), version: compose.version, major: compose.major },
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
    engines: (engines?.engines ?? []).filter((e) => e.chosen).map((e) => ({
      repository: e.repository,
      chosen: e.chosen!.ref,
      notNeeded: e.notNeeded.map((v) => v.ref),
      detail: e.chosen!.detail,
    })),
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
    ...(s02 ? { settings02: settings02Report(s02.detail) } : {}),
    ...(wheels
      ? {
        wheels: {
          files: wheels.files.length,
          target: wheels.target,
          action: wheels.action,
          ...(wheels.reason ? { reason: wheels.reason } : {}),
        },
      }
      : {}),
    readiness: readiness.map((r) => r.url),
    missingImages: imagePlan.missing,
    database,
    ...(register.plan ? { register: register.plan } : {}),
    ...(register.skipped ? { registerSkipped: register.skipped } : {}),
    ...(cur2 && isUpgrade01to02(cur2, policy.line)
      ? {
        from01: {
          release: cur2.release,
          installedBy: cur2.origin === "by-hand" ? "hand" : "cortex-install",
          ...(carry?.from ? { carriedFrom: carry.from } : {}),
          carried: carry?.shown ?? [],
          notes: carry?.notes ?? [],
        },
      }
      : {}),
  };
  return {
    release,
    policy,
    compose,
    ...(engines ? { engines } : {}),
    notNeeded,
    ...(s02 ? { settings02: s02.detail } : {}),
    ...(wheels ? { wheels } : {}),
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
    ...(register.plan ? { register: register.plan } : {}),
  };
}

/**
 * Cortex 0.2's settings that compose or prod-check.sh would refuse are preflight errors: a
 * required (`:?`) key still unset, and prod-check's errors (short secrets or password, CORS `*`,
 * a floating image tag). A dry run lets the admin password be missing (install asks for it).
 */
export function checkSettings02(d: Settings02Plan, dryRun: boolean): void {
  const missing = d.missingRequired.filter((k) => !(dryRun && k === ADMIN_PASSWORD_KEY));
  if (missing.length > 0) {
    throw preflightError(
      "preflight",
      `Cannot start Cortex: the compose file requires ${missing.join(", ")}, which ${
        missing.length > 1 ? "are" : "is"
      } not set in the environment or the root .env`,
      `Set ${missing.length > 1 ? "them" : "it"} in the Cortex dir's .env (compose reads it), ` +
        "then run again.",
    );
  }
  const errors = d.problems.filter((p) => p.level === "error");
  if (errors.length > 0) {
    throw preflightError(
      "preflight",
      `Cannot install Cortex for production: ${errors.map((p) => p.message).join("; ")}`,
      [...new Set(errors.map((p) => p.hint).filter(Boolean))].join(" ") ||
        "Fix the root .env, then run again.",
    );
  }
}

/** A key's value in a .env text (undefined when absent). */
function envValue(text: string | undefined, key: string): string | undefined {
  return text === undefined ? undefined : envRecord(parseEnv(text))[key];
}

function hostname(): string | undefined {
  try {
    return Deno.hostname();
  } catch {
    return undefined;
  }
}
