/**
 * The re-run fast path of `install`: when the journal says this bundle is installed with the
 * same inputs and the last run succeeded, only check that every recorded image still has its ID
 * and every file we wrote its SHA-256, then check the stack (and start what is down). No tar is
 * opened. Anything different falls through to the full (idempotent) install.
 */
import type { Context } from "../context.ts";
import { loadReleaseManifest } from "../bundle/release.ts";
import { detectCompose } from "../docker.ts";
import { stackStatus, startStack } from "../host/stack.ts";
import { engineImages, recordedImages } from "../images/load.ts";
import { sha256Hex, sha256OfFile } from "../hash.ts";
import { overridePath } from "../layout.ts";
import { currentRelease, type Journal } from "../state/journal.ts";
import type { InstallOptions, InstallReport } from "./types.ts";

/**
 * The re-run check (see the module comment). Returns the report of an unchanged re-run, or
 * undefined when the full install must run.
 */
export async function quickRerun(
  ctx: Context,
  o: InstallOptions,
  journal: Journal,
  digest: string,
): Promise<Omit<InstallReport, "durations"> | undefined> {
  const cur = currentRelease(journal);
  if (!cur || cur.bundleDigest !== digest || journal.inProgress) return undefined;
  // --restore-db asks for the bundle's dump again: that is work for the full install.
  if (o.restoreDb) return undefined;
  if (journal.lastRun?.outcome !== "ok") return undefined;
  if (cur.bundleDir !== o.bundleDir || cur.inputs !== await installInputs(o)) return undefined;
  for (const i of recordedImages(cur.images, await engineImages(ctx))) {
    if (i.state !== "present") {
      ctx.log.debug(`re-run: ${i.ref} is not ${i.imageId} any more; running the full install`);
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
  const compose = await detectCompose(
    ctx.docker,
    o.compose !== "auto" ? o.compose : cur.stack?.compose ?? "auto",
  );
  const stack = await startStack(ctx, {
    cortexDir: o.cortexDir,
    files: [o.composeFile, overridePath(o.composeFile)],
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
    // Cortex 0.2's settings given by flags (names and origins, never a password).
    ...(o.admin.user !== undefined ? { adminUser: o.admin.user } : {}),
    ...(o.corsOrigin !== undefined ? { corsOrigin: o.corsOrigin } : {}),
  });
}
