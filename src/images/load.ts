/**
 * Loading image tars (the `load` command and the install's load step): each tar is read ONCE; the
 * same bytes go to SHA-256 and to `docker load` on stdin (through the context's Docker seam). The checksum is the authority (`docker load` accepts a tar with
 * garbage appended): on a mismatch whatever the load created is removed again, and only that.
 * A tar whose every RepoTag already points at its image ID is skipped without reading its data.
 */
import type { Context } from "../context.ts";
import { type ImageInfo, inspectImages, removeImages, tail } from "../docker.ts";
import { ExitCode, InstallError, InterruptedError, throwIfAborted } from "../errors.ts";
import { createSha256, readFull, shortDigest } from "../hash.ts";
import type { Bundle, BundleFile, BundleImage, TarImage, TarIndex } from "../bundle/types.ts";
import { readTarIndex } from "../bundle/tarindex.ts";
import {
  layersToBlank,
  presentChains,
  skipLayersTransform,
  type SkipStats,
} from "../bundle/layerskip.ts";
import { normalizeRef } from "../bundle/release.ts";
import { canonicalRef } from "../host/compose.ts";
import { CHECKSUMS_FILE } from "../layout.ts";
import { listerName, RECOPY_HINT } from "../bundle/verify.ts";

/**
 * Reads and writes of 256 KiB into the engine's load stream: small enough that the first bytes
 * reach the engine at once and its extraction overlaps our read and hash from the start, large
 * enough that syscalls do not count (bench/ suite, case load). Files that are only hashed or
 * copied use hash.ts's CHUNK_SIZE.
 */
const LOAD_WRITE_SIZE = 256 * 1024;

export type LoadVerdict = "loaded" | "present" | "failed" | "skipped-optional" | "not-needed";

export interface LoadedImage {
  /** Bundle-relative path of the tar. */
  file: string;
  /** The refs the image is known by (the tar's RepoTags, else the manifest's refs). */
  refs: string[];
  imageId?: string;
  verdict: LoadVerdict;
  critical: boolean;
  /** Bytes read from the tar (0 when skipped). */
  bytes: number;
  seconds: number;
  /** Digest of the bytes read (absent when not read or --no-verify). */
  sha256?: string;
  expected?: string;
  /** Why it failed or was skipped. */
  message?: string;
  /**
   * Layer bytes (with tar padding) that `docker load` did not get because the engine already had
   * their chain (still hashed). 0 when nothing was skipped or skipping was off.
   */
  skippedLayerBytes?: number;
  /** How many layer entries were sent empty. */
  skippedLayers?: number;
}

export interface LoadReport {
  ok: boolean;
  images: LoadedImage[];
  /** How many times `docker load` ran (0 on a re-run of an installed bundle). */
  dockerLoads: number;
  bytesRead: number;
  seconds: number;
  warnings: string[];
  /**
   * Whether layers the engine already has were left out of `docker load`'s stream, and why not
   * when they were not ("off": --no-layer-skip or CORTEX_INSTALL_NO_LAYER_SKIP; "containerd
   * image store"; ...).
   */
  layerSkip?: { enabled: boolean; reason?: string };
  /** Layer bytes not sent to `docker load` in total (see LoadedImage.skippedLayerBytes). */
  skippedLayerBytes?: number;
}

export interface LoadOptions {
  /** Load without comparing digests (loud warning). */
  noVerify?: boolean;
  /** Load tars that no checksum or pin covers (warning). */
  allowUnlisted?: boolean;
  /** Only these images: file names (or base names) or refs. */
  only?: string[];
  /** Send every layer to `docker load` even when the engine has it (no layer skipping). */
  noLayerSkip?: boolean;
  /** Tar indexes already read (by bundle-relative path), so no tar's headers are read twice. */
  indexes?: ReadonlyMap<string, TarIndex>;
  /**
   * Tars not loaded on this host, by bundle-relative path, and why (the engine builds this
   * driver does not need: "not needed on this host"). Reported as `not-needed`, never read.
   */
  notNeeded?: ReadonlyMap<string, string>;
}

/** What was on the engine before a load, to undo exactly what the load did. */
export interface EngineBefore {
  /** ref -> image ID it pointed to (absent: the tag did not exist). */
  tags: Map<string, string>;
  /** Image IDs that existed. */
  ids: Set<string>;
}

/** The refs of one tar: its RepoTags, else what the bundle's manifest declares. Pure. */
export function imageRefs(index: TarIndex, declared: string[]): string[] {
  const tags = [...new Set(index.images.flatMap((i) => i.repoTags.map(normalizeRef)))];
  return tags.length > 0 ? tags : [...new Set(declared.map(normalizeRef))];
}

/** ref -> the image ID the tar gives it. An untagged single-image tar gives it `declared`. Pure. */
export function wantedTags(images: TarImage[], declared: string[]): Map<string, string> {
  const want = new Map<string, string>();
  for (const img of images) for (const t of img.repoTags) want.set(normalizeRef(t), img.imageId);
  if (want.size === 0 && images.length === 1) {
    for (const d of declared) want.set(normalizeRef(d), images[0].imageId);
  }
  return want;
}

/**
 * Whether loading can be skipped: every wanted tag already points at its image ID. A tar that
 * names no tag at all is present when all its image IDs exist. Pure.
 */
export function isPresent(
  images: TarImage[],
  want: Map<string, string>,
  before: EngineBefore,
): boolean {
  if (images.length === 0) return false;
  if (want.size === 0) return images.every((i) => before.ids.has(i.imageId));
  for (const [ref, id] of want) if (before.tags.get(ref) !== id) return false;
  return true;
}

/** Images in the engine: `repo:tag` (canonical, see canonicalRef) -> image ID. One docker call. */
export async function engineImages(ctx: Context): Promise<Map<string, string>> {
  const r = await ctx.docker.run(
    ["images", "--no-trunc", "--format", "{{.Repository}}:{{.Tag}}\t{{.ID}}"],
  );
  const m = new Map<string, string>();
  if (r.code !== 0) return m;
  for (const line of r.stdout.split("\n")) {
    const [ref, id] = line.split("\t");
    if (!ref || !id || ref.includes("<none>")) continue;
    m.set(canonicalRef(ref), id.trim());
  }
  return m;
}

/**
 * Whether a tar's images (or one of them) are in the engine as `engineImages` lists it: the same
 * test as the load's (isPresent), for the plan and the disk preflight, which read no more than
 * one `docker images`. Pure.
 */
export function presentInEngine(
  images: TarImage[],
  declared: string[],
  engine: ReadonlyMap<string, string>,
): boolean {
  const want = wantedTags(images, declared);
  const tags = new Map<string, string>();
  for (const ref of want.keys()) {
    const id = engine.get(canonicalRef(ref));
    if (id) tags.set(ref, id);
  }
  return isPresent(images, want, { tags, ids: new Set(engine.values()) });
}

/** What the engine holds of a recorded release: each ref and whether it still has its image ID. */
export function recordedImages(
  images: Record<string, string>,
  engine: ReadonlyMap<string, string>,
): { ref: string; imageId: string; state: "present" | "changed" | "missing" }[] {
  return Object.entries(images).map(([ref, imageId]) => {
    const now = engine.get(canonicalRef(ref));
    return { ref, imageId, state: now === imageId ? "present" : now ? "changed" : "missing" };
  });
}

/** What to do to undo a load, given the engine before and after it. */
export interface UndoPlan {
  /** Tags that did not exist before: remove. */
  untag: string[];
  /** Tags that pointed elsewhere before: point them back ([id, ref]). */
  retag: [string, string][];
  /** Image IDs that did not exist before: remove (after the tags). */
  removeIds: string[];
}

/**
 * Plans the undo of a failed load from what existed before and exists now. Never touches a tag
 * or image that was there before. Pure.
 */
export function planUndo(
  images: TarImage[],
  want: Map<string, string>,
  before: EngineBefore,
  after: EngineBefore,
): UndoPlan {
  const plan: UndoPlan = { untag: [], retag: [], removeIds: [] };
  for (const ref of want.keys()) {
    const prev = before.tags.get(ref);
    const now = after.tags.get(ref);
    if (now === undefined || now === prev) continue;
    if (prev === undefined) plan.untag.push(ref);
    else plan.retag.push([prev, ref]);
  }
  for (const img of images) {
    if (!before.ids.has(img.imageId) && after.ids.has(img.imageId)) {
      plan.removeIds.push(img.imageId);
    }
  }
  return plan;
}

/**
 * The tags a loaded tar must end up with: its RepoTags (`wantedTags`), plus, for a 0.2 image
 * (`tagDeclared`), every declared ref on the tar's one image, even when its RepoTags name it
 * differently (Cortex's loader then runs `docker tag <id> <ref>`). Pure.
 */
export function wantedTagsFor(
  images: TarImage[],
  declared: string[],
  tagDeclared: boolean | undefined,
): Map<string, string> {
  const want = wantedTags(images, declared);
  if (tagDeclared && images.length === 1) {
    for (const d of declared) want.set(normalizeRef(d), images[0].imageId);
  }
  return want;
}

/**
 * What the engine already has of a 0.2 image whose ID the bundle names up front: `present` when
 * every declared ref points at that ID (no tar is opened), `tag` when the ID exists under other
 * names (a `docker tag` suffices), `load` otherwise. Pure.
 */
export function presenceById(
  imageId: string,
  refs: string[],
  before: EngineBefore,
): "present" | "tag" | "load" {
  if (refs.length > 0 && refs.every((r) => before.tags.get(normalizeRef(r)) === imageId)) {
    return "present";
  }
  return before.ids.has(imageId) ? "tag" : "load";
}

/** Whether `--only` selects this image (file, base name or ref). Pure. */
export function selected(only: string[] | undefined, file: string, refs: string[]): boolean {
  if (!only || only.length === 0) return true;
  const base = file.split("/").pop()!;
  const norm = new Set(refs.map(normalizeRef));
  return only.some((o) => o === file || o === base || norm.has(normalizeRef(o)));
}

async function snapshot(ctx: Context, refs: string[], ids: string[]): Promise<EngineBefore> {
  const found: Map<string, ImageInfo> = await inspectImages(ctx.docker, [...refs, ...ids]);
  const tags = new Map<string, string>();
  for (const r of refs) {
    const info = found.get(r);
    if (info) tags.set(r, info.id);
  }
  return { tags, ids: new Set(ids.filter((i) => found.has(i))) };
}

interface Planned {
  image: BundleImage;
  file?: BundleFile;
  index?: TarIndex;
  refs: string[];
  want: Map<string, string>;
  before?: EngineBefore;
  entry: LoadedImage;
  /** The end of `docker load`'s output, for a failed tag check. */
  loadOutput?: string;
}

/**
 * Loads the bundle's image tars into the engine (see the module comment). A critical image that
 * fails stops the run with an InstallError (exit 4 for integrity, 5 for Docker); an optional one
 * is reported as "failed" with a warning. Respects ctx.signal: kills `docker load`, removes what
 * it created, throws InterruptedError.
 */
export async function loadImages(
  ctx: Context,
  bundle: Bundle,
  opts: LoadOptions = {},
): Promise<LoadReport> {
  const started = performance.now();
  const warnings: string[] = [];
  const warn = (m: string) => {
    warnings.push(m);
    ctx.log.warn(m);
  };
  const report: LoadReport = {
    ok: true,
    images: [],
    dockerLoads: 0,
    bytesRead: 0,
    seconds: 0,
    warnings,
  };
  if (opts.noVerify) {
    warn(
      "Integrity checks are OFF (--no-verify): image tars are loaded without checking their sha256",
    );
  }
  const filesByPath = new Map(bundle.files.map((f) => [f.path, f]));
  // 0.2: images.json vs checksums.sha256 (or images.json itself) found damaged while reading:
  // nothing is loaded from a bundle whose image list cannot be trusted.
  const fatal = (bundle.problems ?? []).filter((p) => p.scope !== "models");
  if (fatal.length > 0) {
    if (!opts.noVerify) {
      throw new InstallError(
        "load",
        fatal.length === 1
          ? fatal[0].message
          : `Cannot load images from "${bundle.dir}": ${fatal.length} integrity problems: ${
            fatal.map((p) => `"${p.path}"`).join(", ")
          }`,
        ExitCode.Integrity,
        fatal[0].hint ?? RECOPY_HINT,
        fatal.length > 1 ? fatal.map((p) => p.message).join("\n") : undefined,
      );
    }
    for (const p of fatal) warn(`${p.message} (ignored: --no-verify)`);
  }

  /** Records a failure: throws for a critical image, warns for an optional one. */
  const fail = (p: Planned, err: InstallError): void => {
    p.entry.verdict = "failed";
    p.entry.message = err.message;
    if (p.image.critical) throw err;
    warn(`${err.message} (optional image, continuing)`);
  };

  // 1. Plan: read each tar's index (headers only) and what the engine has, without loading.
  const plans: Planned[] = [];
  /** 0.2 images whose ID exists under other names: `docker tag` only, no load. */
  const tagOnly: Planned[] = [];
  for (const image of bundle.images) {
    const file = filesByPath.get(image.file);
    const entry: LoadedImage = {
      file: image.file,
      refs: image.declaredRefs.map(normalizeRef),
      verdict: "loaded",
      critical: image.critical,
      bytes: 0,
      seconds: 0,
      expected: file?.expected?.sha256,
    };
    const p: Planned = { image, file, refs: entry.refs, want: new Map(), entry };
    if (!selected(opts.only, image.file, image.declaredRefs)) continue;
    report.images.push(entry);
    const notNeeded = opts.notNeeded?.get(image.file);
    if (notNeeded !== undefined) {
      entry.verdict = "not-needed";
      entry.message = notNeeded;
      ctx.log.info(`"${image.file}": ${notNeeded}`);
      continue;
    }
    if (!file || file.size === undefined) {
      const msg = `Cannot load image "${image.file}": the file is missing from the bundle`;
      if (image.critical) {
        fail(
          p,
          new InstallError(
            "load",
            msg,
            ExitCode.Integrity,
            "Copy it from the transfer media, then run again.",
          ),
        );
      }
      entry.verdict = "skipped-optional";
      entry.message = msg;
      warn(`${msg} (optional image, skipped)`);
      continue;
    }
    if (!file.expected && !opts.noVerify) {
      if (!opts.allowUnlisted) {
        fail(
          p,
          new InstallError(
            "load",
            `Cannot load image "${image.file}": no checksum or pin covers it`,
            ExitCode.Integrity,
            `Add it to ${CHECKSUMS_FILE} on the source host, or pass --allow-unlisted to load it unverified.`,
          ),
        );
        continue;
      }
      warn(`Loading "${image.file}" unverified: no checksum or pin covers it (--allow-unlisted)`);
    }
    throwIfAborted(ctx.signal);
    if (image.imageId && image.declaredRefs.length > 0) {
      // The bundle names the image ID up front (0.2): decide without opening the tar.
      const refs = image.declaredRefs.map(normalizeRef);
      const before = await snapshot(ctx, refs, [image.imageId]);
      const state = presenceById(image.imageId, refs, before);
      if (state !== "load") {
        entry.imageId = image.imageId;
        p.want = new Map(refs.map((r) => [r, image.imageId!]));
        p.before = before;
        if (state === "present") {
          entry.verdict = "present";
          entry.message = "already present";
          ctx.log.debug(`"${image.file}" is already present (image ID from the bundle)`);
        } else {
          tagOnly.push(p);
        }
        continue;
      }
    }
    try {
      p.index = opts.indexes?.get(image.file) ??
        await readTarIndex(file.abs, { signal: ctx.signal });
    } catch (e) {
      if (e instanceof InterruptedError) throw e;
      const msg = e instanceof Error ? e.message : String(e);
      fail(
        p,
        e instanceof InstallError
          ? new InstallError("load", e.message, e.exitCode, e.hint ?? RECOPY_HINT, e.detail)
          : new InstallError(
            "load",
            `Cannot load image "${image.file}": ${msg}`,
            ExitCode.Integrity,
            RECOPY_HINT,
          ),
      );
      continue;
    }
    p.refs = imageRefs(p.index, image.declaredRefs);
    if (image.tagDeclared) {
      p.refs = [...new Set([...p.refs, ...image.declaredRefs.map(normalizeRef)])];
    }
    p.want = wantedTagsFor(p.index.images, image.declaredRefs, image.tagDeclared);
    entry.refs = p.refs;
    entry.imageId = p.index.images[0]?.imageId;
    plans.push(p);
  }

  // 2. What is present: one inspect per ref and image ID.
  await Promise.all(plans.map(async (p) => {
    p.before = await snapshot(ctx, [...p.want.keys()], p.index!.images.map((i) => i.imageId));
    if (isPresent(p.index!.images, p.want, p.before)) {
      p.entry.verdict = "present";
      p.entry.message = "already present";
    }
  }));
  const toLoad = plans.filter((p) => p.entry.verdict !== "present");
  ctx.progress.addTotal(toLoad.reduce((s, p) => s + (p.file!.size ?? 0), 0));
  for (const p of plans) {
    if (p.entry.verdict === "present") ctx.log.debug(`"${p.image.file}" is already present`);
  }

  // 3. Layers the engine already has (by chain ID) can go to docker load empty.
  let chains: Set<string> | undefined;
  if (toLoad.some((p) => !p.index!.compressed)) {
    const skip = await layerSkipSupport(ctx, opts);
    report.layerSkip = skip;
    if (skip.enabled) chains = await engineChains(ctx);
    else ctx.log.debug(`Layer skipping is off: ${skip.reason}`);
  }

  // 4. Images present under other names get their refs with `docker tag` (nothing read).
  for (const p of tagOnly) {
    throwIfAborted(ctx.signal);
    await tagPresent(ctx, p, fail);
  }

  // 5. Load, one tar at a time (the engine's extraction is the bottleneck).
  for (const p of toLoad) {
    throwIfAborted(ctx.signal);
    let blank: Set<string> | undefined;
    if (chains && !p.index!.compressed) {
      try {
        blank = layersToBlank(p.index!.images, chains);
      } catch (e) {
        ctx.log.debug(`"${p.image.file}": no layer skipping (${(e as Error).message})`);
      }
    }
    await loadOne(ctx, p, opts, report, fail, blank?.size ? blank : undefined, warn);
    // The next tars of this run may share these layers (engines on one CUDA base): now present.
    if (chains && p.entry.verdict === "loaded") {
      for (const c of presentChains(p.index!.images.map((i) => i.diffIds))) chains.add(c);
    }
  }
  await checkTags(ctx, toLoad.filter((p) => p.entry.verdict === "loaded"), fail);
  report.skippedLayerBytes = report.images.reduce((s, i) => s + (i.skippedLayerBytes ?? 0), 0);
  report.seconds = (performance.now() - started) / 1000;
  report.ok = report.images.every((i) => i.verdict !== "failed");
  return report;
}

/**
 * Whether this engine may be sent tars with present layers left empty: only the classic image
 * store (graph drivers) looks a layer's chain up before opening it. The containerd image store
 * (Docker 24+ option, default in 29) imports every blob, so skipping is off there.
 */
export async function layerSkipSupport(
  ctx: Context,
  opts: { noLayerSkip?: boolean } = {},
): Promise<{ enabled: boolean; reason?: string }> {
  if (opts.noLayerSkip || ctx.env("CORTEX_INSTALL_NO_LAYER_SKIP")) {
    return { enabled: false, reason: "off" };
  }
  const r = await ctx.docker.run(["info", "--format", "{{.Driver}}\t{{json .DriverStatus}}"]);
  if (r.code !== 0) return { enabled: false, reason: "docker info failed" };
  return classicImageStore(r.stdout);
}

const GRAPH_DRIVERS = new Set([
  "overlay2",
  "overlay",
  "aufs",
  "btrfs",
  "zfs",
  "devicemapper",
  "vfs",
  "fuse-overlayfs",
  "windowsfilter",
]);

/** From `docker info` "<Driver>\t<DriverStatus JSON>": classic store or not. Pure. */
export function classicImageStore(info: string): { enabled: boolean; reason?: string } {
  const [driver, status = ""] = info.trim().split("\t");
  if (/io\.containerd\.snapshotter/.test(status)) {
    return { enabled: false, reason: "containerd image store" };
  }
  if (!GRAPH_DRIVERS.has(driver)) {
    return { enabled: false, reason: `storage driver "${driver}" is not a classic graph driver` };
  }
  return { enabled: true };
}

/** Chain IDs of every layer stack in the engine: one `docker image inspect` of all images. */
export async function engineChains(ctx: Context): Promise<Set<string>> {
  const ids = await ctx.docker.run(["images", "-q", "--no-trunc"]);
  const list = [...new Set(ids.stdout.split("\n").map((s) => s.trim()).filter(Boolean))];
  if (ids.code !== 0 || list.length === 0) return new Set();
  const r = await ctx.docker.run(
    ["image", "inspect", "--format", "{{json .RootFS.Layers}}", ...list],
  );
  // An image removed meanwhile fails the call as a whole: the lines it did print still count.
  const stacks: string[][] = [];
  for (const line of r.stdout.split("\n")) {
    if (!line.trim()) continue;
    try {
      const l = JSON.parse(line);
      if (Array.isArray(l)) stacks.push(l.filter((x) => typeof x === "string"));
    } catch { /* not a layer list */ }
  }
  return presentChains(stacks);
}

async function loadOne(
  ctx: Context,
  p: Planned,
  opts: LoadOptions,
  report: LoadReport,
  fail: (p: Planned, e: InstallError) => void,
  blank?: Set<string>,
  warn?: (m: string) => void,
): Promise<void> {
  const file = p.file!;
  const t0 = performance.now();
  ctx.progress.label(`load ${file.path}`);
  report.dockerLoads++;
  const stats: SkipStats = { blanked: [], skippedBytes: 0, gaveUp: false };
  let r = await streamLoad(ctx, file.abs, !opts.noVerify, blank, stats);
  p.entry.bytes = r.bytes;
  p.entry.sha256 = r.sha256;
  report.bytesRead += r.bytes;
  const expected = opts.noVerify ? undefined : file.expected?.sha256;
  let mismatch = expected !== undefined && r.sha256 !== expected;
  if (blank && !r.interrupted && !mismatch && r.code !== 0) {
    // The engine refused the stream with empty layers (a layer removed meanwhile, or an engine
    // that opens every layer): undo, then send the whole tar (read again).
    await undo(ctx, p);
    (warn ?? ctx.log.warn)(
      `docker load refused "${file.path}" with the layers the engine has left out; loading the full tar instead (${
        tail(`${r.stdout}\n${r.stderr}`, 1)
      })`,
    );
    ctx.progress.addTotal(file.size ?? 0);
    report.dockerLoads++;
    stats.blanked = [];
    stats.skippedBytes = 0;
    r = await streamLoad(ctx, file.abs, !opts.noVerify);
    p.entry.bytes += r.bytes;
    p.entry.sha256 = r.sha256;
    report.bytesRead += r.bytes;
    mismatch = expected !== undefined && r.sha256 !== expected;
  }
  p.entry.skippedLayerBytes = stats.skippedBytes;
  p.entry.skippedLayers = stats.blanked.length;

  if (r.interrupted || mismatch || r.code !== 0) {
    const undone = await undo(ctx, p);
    p.entry.seconds = (performance.now() - t0) / 1000;
    if (r.interrupted) throw new InterruptedError();
    const left = undone.length ? ` (could not remove ${undone.join(", ")})` : "";
    if (mismatch) {
      const lister = listerName(file.expected?.source);
      return fail(
        p,
        new InstallError(
          "load",
          `Cannot load image "${file.path}": sha256 is ${shortDigest(r.sha256)}, ${lister} lists ${
            shortDigest(expected)
          }; nothing of it was kept${left}`,
          ExitCode.Integrity,
          RECOPY_HINT,
          `expected ${expected}\nactual   ${r.sha256}`,
        ),
      );
    }
    return fail(
      p,
      new InstallError(
        "load",
        `Cannot load image "${file.path}": docker load exited with code ${r.code}${left}`,
        ExitCode.Docker,
        "Check that the Docker engine is running and has free disk space, then run again.",
        tail(`${r.stdout}\n${r.stderr}`),
      ),
    );
  }

  // Untagged tar with refs from the manifest: give it those tags.
  const tagged = new Set(p.index!.images.flatMap((i) => i.repoTags.map(normalizeRef)));
  for (const [ref, id] of p.want) {
    if (tagged.has(ref)) continue;
    const t = await ctx.docker.run(["tag", id, ref]);
    if (t.code !== 0) {
      return fail(
        p,
        new InstallError(
          "load",
          `Cannot tag "${id}" as "${ref}"`,
          ExitCode.Docker,
          undefined,
          tail(t.stderr),
        ),
      );
    }
  }
  // Whether its tags point at its image ID is checked once for all tars, after the last load
  // (one `docker image inspect` instead of one per tar: checkTags).
  p.entry.verdict = "loaded";
  p.entry.seconds = (performance.now() - t0) / 1000;
  p.loadOutput = tail(`${r.stdout}\n${r.stderr}`);
}

/**
 * After the loads: every wanted tag of every loaded tar points at its image ID (one inspect of
 * them all). A tag that does not (an engine that tagged something else) fails that image.
 */
async function checkTags(
  ctx: Context,
  loaded: Planned[],
  fail: (p: Planned, e: InstallError) => void,
): Promise<void> {
  if (loaded.length === 0) return;
  const after = await snapshot(ctx, [...new Set(loaded.flatMap((p) => [...p.want.keys()]))], []);
  for (const p of loaded) {
    const wrong = [...p.want].filter(([ref, id]) => after.tags.get(ref) !== id).map(([r]) => r);
    if (wrong.length === 0) continue;
    fail(
      p,
      new InstallError(
        "load",
        `Cannot load image "${p.file!.path}": after docker load, ${
          wrong.map((w) => `"${w}"`).join(", ")
        } does not point at ${shortDigest(p.entry.imageId)}`,
        ExitCode.Docker,
        undefined,
        p.loadOutput,
      ),
    );
  }
}

/** Points every wanted ref of an image that is present by ID at it (`docker tag`). */
async function tagPresent(
  ctx: Context,
  p: Planned,
  fail: (p: Planned, e: InstallError) => void,
): Promise<void> {
  const t0 = performance.now();
  for (const [ref, id] of p.want) {
    if (p.before?.tags.get(ref) === id) continue;
    const t = await ctx.docker.run(["tag", id, ref]);
    if (t.code !== 0) {
      return fail(
        p,
        new InstallError(
          "load",
          `Cannot tag "${id}" as "${ref}"`,
          ExitCode.Docker,
          undefined,
          tail(t.stderr),
        ),
      );
    }
  }
  p.entry.verdict = "present";
  p.entry.message = `already present (image ID from the bundle); tagged as ${
    [...p.want.keys()].join(", ")
  }`;
  p.entry.seconds = (performance.now() - t0) / 1000;
}

/** Removes what a failed load created; returns what could not be removed. */
async function undo(ctx: Context, p: Planned): Promise<string[]> {
  const images = p.index!.images;
  const after = await snapshot(ctx, [...p.want.keys()], images.map((i) => i.imageId));
  const plan = planUndo(images, p.want, p.before!, after);
  // Cleanup must run even when the run was interrupted: no abort signal here.
  const left: string[] = [];
  for (const [id, ref] of plan.retag) {
    const r = await ctx.docker.run(["tag", id, ref], { signal: null });
    if (r.code !== 0) left.push(ref);
  }
  left.push(...await removeImages(ctx.docker, plan.untag));
  left.push(...await removeImages(ctx.docker, plan.removeIds));
  if (plan.untag.length + plan.removeIds.length + plan.retag.length > 0) {
    ctx.log.debug(
      `Removed what the failed load of "${p.image.file}" created: ${
        [...plan.untag, ...plan.removeIds].join(", ")
      }`,
    );
  }
  return left;
}

interface StreamResult {
  code: number;
  stdout: string;
  stderr: string;
  sha256?: string;
  bytes: number;
  interrupted: boolean;
}

/**
 * Reads `path` once, feeding each chunk to SHA-256 (when `hash`) and to `docker load`'s stdin
 * (through the seam: the runner hands us the process's stdin). Two buffers alternate so the next
 * read overlaps the previous write. If Docker stops reading early, the rest is still hashed so
 * that a damaged file is reported as such. An abort stops the reading and kills `docker load`.
 */
async function streamLoad(
  ctx: Context,
  path: string,
  hash: boolean,
  blank?: Set<string>,
  stats?: SkipStats,
): Promise<StreamResult> {
  const h = hash ? createSha256() : undefined;
  let bytes = 0;
  const feed = async (stdin: WritableStream<Uint8Array>) => {
    // With layers to leave out, the bytes go through the tar transform, which copies what it
    // passes on: a chunk's buffer is free again once its write settles, with or without it.
    const transform = blank ? skipLayersTransform(blank, stats) : undefined;
    const piping = transform
      ? transform.readable.pipeTo(stdin).then(() => true, () => false)
      : Promise.resolve(true);
    const writer = transform ? transform.writable.getWriter() : stdin.getWriter();
    let writing = true;
    let pending: Promise<void> = Promise.resolve();
    // Three buffers: while this thread hashes chunk i, Deno's I/O threads read chunk i + 1 and
    // the engine takes chunk i - 1 (SHA-256 is the one serial part; reads no longer wait on it).
    const bufs = [0, 1, 2].map(() => new Uint8Array(LOAD_WRITE_SIZE));
    let reading: Promise<number> = Promise.resolve(0);
    try {
      using f = await Deno.open(path, { read: true });
      try {
        let buf = bufs[0];
        reading = readFull(f, buf);
        for (let i = 0; !ctx.signal.aborted; i++) {
          const filled = await reading;
          if (filled === 0) break;
          const chunk = buf.subarray(0, filled);
          // Buffer i + 1 held chunk i - 2, whose write ended before chunk i - 1's began.
          buf = bufs[(i + 1) % 3];
          reading = filled < LOAD_WRITE_SIZE ? Promise.resolve(0) : readFull(f, buf);
          reading.catch(() => {});
          h?.update(chunk);
          bytes += filled;
          ctx.progress.advance(filled);
          await pending;
          if (writing) {
            // Handled at once: a write that fails (docker exited) while we are reading must not
            // surface as an unhandled rejection; the loop sees `writing` turn false.
            pending = writer.write(chunk).catch(() => {
              writing = false;
            });
          } else if (!hash) break;
        }
        await pending;
      } finally {
        // The read in flight ends before the file closes.
        await reading.catch(() => 0);
      }
    } finally {
      if (writing && !ctx.signal.aborted) await writer.close().catch(() => {});
      else await writer.abort().catch(() => {});
    }
    await piping;
  };
  // The engine's API socket when the runner has it (no CLI process in between), else the CLI.
  const r = ctx.docker.loadImage
    ? await ctx.docker.loadImage(feed)
    : await ctx.docker.run(["load"], { stdin: feed });
  return {
    code: r.code,
    stdout: r.stdout,
    stderr: r.stderr,
    sha256: h?.hex(),
    bytes,
    interrupted: ctx.signal.aborted,
  };
}

/**
 * Bytes `docker load` will unpack from this tar (pure): every entry except the layers whose
 * chain the engine already has (those go to it empty, see layerskip.ts). Used by the disk
 * preflight, so an upgrade that shares its base layers needs room only for its new layers.
 */
export function newLayerBytes(index: TarIndex, present: ReadonlySet<string> | undefined): number {
  const layers = new Set(index.images.flatMap((i) => i.layerPaths));
  const blank = present && !index.compressed ? layersToBlank(index.images, present) : new Set();
  let bytes = 0;
  for (const path of layers) if (!blank.has(path)) bytes += index.entrySizes[path] ?? 0;
  return bytes;
}
