/**
 * `doctor`: the read-only preflight. It asks Docker, Compose, the disks, the GPU stack, the
 * network and the ports whether this bundle can be installed here, and returns one report; it
 * never writes. The pieces are exported for the install command to reuse.
 */
import type { Context } from "../context.ts";
import type { Bundle, BundleImage, TarIndex } from "../bundle/types.ts";
import { readTarIndex } from "../bundle/tarindex.ts";
import {
  type ComposeChoice,
  detectCompose,
  type ImageInfo,
  inspectImages,
  runCommand,
  type RunResult,
} from "../docker.ts";
import { InstallError, InterruptedError, preflightError, throwIfAborted } from "../errors.ts";
import {
  DB_BACKUPS_DIR,
  DEFAULT_HF_CACHE_DIR,
  DEFAULT_MODELS_DIR,
  DEFAULT_PROJECT,
  DEFAULT_STATE_DIR,
  ROOT_ENV,
} from "../layout.ts";
import { dockerChecks, type DockerFacts, dockerFacts } from "./docker.ts";
import {
  checkDisk,
  diskChecks,
  type DiskItem,
  type DiskNeed,
  statDev,
  STATE_DIR_BYTES,
} from "./disk.ts";
import {
  detectGpu,
  gpuChecks,
  type GpuInfo,
  imageCudaChecks,
  type ImageCudaNeed,
  judgeCuda,
  requireCudaFromEnv,
} from "./gpu.ts";
import {
  detectNetwork,
  networkChecks,
  type NetworkInfo,
  type NetworkProbes,
  realProbes,
} from "./network.ts";
import {
  checkPorts,
  defaultPortWants,
  type ListenResult,
  parseDotEnv,
  portChecks,
  type PortInfo,
  portsFromCompose,
  type PortWant,
  procProcessOf,
  tryListen,
} from "./ports.ts";
import type { Check, Run } from "./types.ts";
import {
  chooseEngines,
  engineChecks,
  type EngineVariant,
  isEngine,
  variantOf,
} from "../host/engines.ts";

export type { Check, Run } from "./types.ts";
export type { DockerFacts } from "./docker.ts";
export type { DiskItem, DiskNeed } from "./disk.ts";
export type { Gpu, GpuInfo, ImageCudaNeed } from "./gpu.ts";
export type { NetworkInfo, NetworkProbes, Probe } from "./network.ts";
export type { PortInfo, PortWant } from "./ports.ts";
export { checkDisk, diskChecks, withMargin } from "./disk.ts";
export { compareVersions, dockerChecks, dockerFacts, parseDockerInfo } from "./docker.ts";
export { detectGpu, gpuChecks, judgeCuda, parseRequireCuda } from "./gpu.ts";
export { decideNetwork, detectNetwork, realProbes } from "./network.ts";
export { checkPorts, defaultPortWants, portChecks, portsFromCompose } from "./ports.ts";

export interface DoctorOptions {
  bundle?: Bundle;
  network?: "offline" | "online";
  composeFile?: string;
  composeProject?: string;
  modelsDir?: string;
  stateDir?: string;
  hfCacheDir?: string;
  /** Bytes the models will take (default: estimated from the bundle). */
  modelBytes?: number;
  /** Bytes the images will take in Docker's data root (default: estimated from the bundle). */
  imageBytes?: number;
  /** Which compose to use (`--compose`; default auto). */
  compose?: ComposeChoice;
  /**
   * Engine refs to prefer when several builds of an engine run on this driver (the checkout's
   * versions.env VLLM_IMAGE, say).
   */
  preferredEngineRefs?: readonly string[];
  /** Bytes of database backups this run writes into the state dir. */
  dbBackupBytes?: number;
  /** Bytes a database restore writes into Docker's data root (data and WAL). */
  dbRestoreBytes?: number;
}

export interface DoctorReport {
  /** False when any check failed (the CLI then exits 3). */
  ok: boolean;
  checks: Check[];
  docker: {
    cli: boolean;
    reachable: boolean;
    problem?: string;
    error?: string;
    serverVersion?: string;
    clientVersion?: string;
    rootDir?: string;
    runtimes: string[];
    nvidiaRuntime: boolean;
  };
  compose?: { cmd: string[]; version: string; major: 1 | 2 };
  gpu: GpuInfo;
  network: NetworkInfo;
  disk: DiskNeed[];
  ports: PortInfo[];
}

/** The outside world of the doctor; every piece can be replaced in tests. */
export interface DoctorDeps {
  run: Run;
  compose: (want?: ComposeChoice) => ReturnType<typeof detectCompose>;
  inspect: (refs: string[]) => Promise<Map<string, ImageInfo>>;
  readTarIndex: (path: string, opts?: { signal?: AbortSignal }) => Promise<TarIndex>;
  probes: NetworkProbes;
  stat: (path: string) => Promise<{ dev: number } | undefined>;
  listen: (hostname: string, port: number) => ListenResult;
  processOf: (port: number) => Promise<string | undefined>;
  readText: (path: string) => Promise<string | undefined>;
  uid: () => number | undefined;
}

/**
 * A `Run` over the real process: `docker` goes through the context's Docker seam, anything else
 * (df, nvidia-smi, ip) through runCommand; `timeoutMs` kills a hung command (code 124).
 */
export function contextRun(ctx: Context): Run {
  return async (cmd, args, o) => {
    const signal = o?.timeoutMs
      ? AbortSignal.any([ctx.signal, AbortSignal.timeout(o.timeoutMs)])
      : ctx.signal;
    try {
      const r: RunResult = cmd === "docker"
        ? await ctx.docker.run(args, { signal })
        : await runCommand(cmd, args, { signal });
      if (signal.aborted && !ctx.signal.aborted) {
        return {
          ...r,
          code: 124,
          stderr: `${r.stderr}\n${cmd}: no answer within ${o?.timeoutMs} ms`,
        };
      }
      return r;
    } catch (e) {
      return { code: 124, stdout: "", stderr: `${cmd}: ${e instanceof Error ? e.message : e}` };
    }
  };
}

async function readTextOrUndefined(path: string): Promise<string | undefined> {
  try {
    return await Deno.readTextFile(path);
  } catch {
    return undefined;
  }
}

/** The real dependencies for a context. */
export function realDeps(ctx: Context): DoctorDeps {
  const run = contextRun(ctx);
  return {
    run,
    compose: (want) => detectCompose(ctx.docker, want),
    inspect: (refs) => inspectImages(ctx.docker, refs),
    readTarIndex,
    probes: realProbes(run),
    stat: statDev,
    listen: tryListen,
    processOf: procProcessOf,
    readText: readTextOrUndefined,
    uid: () => {
      try {
        return Deno.uid() ?? undefined;
      } catch {
        return undefined;
      }
    },
  };
}

/** Whether a bundle image is an inference engine (vLLM, llama.cpp), which needs the GPU stack. */
export function isEngineImage(img: BundleImage): boolean {
  return isEngine(img);
}

/** Size in bytes of a bundle file (from the bundle, else stat), 0 when unknown. */
async function fileSize(bundle: Bundle, rel: string, abs?: string): Promise<number> {
  const f = bundle.files.find((x) => x.path === rel || x.abs === abs);
  if (f?.size !== undefined) return f.size;
  try {
    return (await Deno.stat(abs ?? `${bundle.dir}/${rel}`)).size;
  } catch {
    return 0;
  }
}

/** Total size of the files under a folder (symlinks not followed). */
async function treeSize(dir: string): Promise<number> {
  let total = 0;
  try {
    for await (const e of Deno.readDir(dir)) {
      const p = `${dir}/${e.name}`;
      if (e.isDirectory) total += await treeSize(p);
      else if (e.isFile) total += (await Deno.stat(p)).size;
    }
  } catch { /* unreadable: counted as 0 */ }
  return total;
}

/**
 * Estimates what Docker's data root needs for the bundle: the tar sizes of images not present
 * yet, plus the largest of those tars again for `docker load`'s temporary extraction under the
 * data root (loads run one at a time). Exported for the install's plan.
 */
export async function estimateImageBytes(
  bundle: Bundle,
  inspect: DoctorDeps["inspect"],
): Promise<{ imageBytes: number; tempBytes: number; missing: string[] }> {
  const refs = [...new Set(bundle.images.flatMap((i) => i.declaredRefs))];
  const present = refs.length ? await inspect(refs) : new Map<string, ImageInfo>();
  let imageBytes = 0;
  let tempBytes = 0;
  const missing: string[] = [];
  for (const img of bundle.images) {
    if (img.declaredRefs.length > 0 && img.declaredRefs.every((r) => present.has(r))) continue;
    const size = await fileSize(bundle, img.file);
    imageBytes += size;
    tempBytes = Math.max(tempBytes, size);
    missing.push(img.file);
  }
  return { imageBytes, tempBytes, missing };
}

/** Estimates the bytes the bundle's models take in the models dir and in the HF cache dir. */
export async function estimateModelBytes(
  bundle: Bundle,
): Promise<{ models: number; hfCache: number }> {
  let models = 0;
  let hfCache = 0;
  for (const m of bundle.models) {
    if (m.kind === "bundle-model") models += m.files.reduce((s, f) => s + f.bytes, 0);
    else if (m.kind === "folder") models += await treeSize(m.path);
    else if (m.kind === "hf-cache-archive") hfCache += await fileSize(bundle, m.path, m.path);
    else models += await fileSize(bundle, m.path, m.path);
  }
  return { models, hfCache };
}

/** Reads the compose file's host ports, interpolating from the environment then its `.env`. */
export async function composePortWants(
  composeFile: string,
  env: (k: string) => string | undefined,
  readText: DoctorDeps["readText"],
): Promise<PortWant[] | undefined> {
  const text = await readText(composeFile);
  if (text === undefined) return undefined;
  const dir = composeFile.slice(0, composeFile.lastIndexOf("/")) || ".";
  const dotEnv = parseDotEnv((await readText(`${dir}/${ROOT_ENV}`)) ?? "");
  try {
    return portsFromCompose(
      text,
      (k) => env(k) ?? (Object.hasOwn(dotEnv, k) ? dotEnv[k] : undefined),
      composeFile,
    );
  } catch (e) {
    // A compose file that does not parse (YAML error, `${VAR:?}` unset): the same clean error as
    // the compose reader's, not a stack trace.
    if (e instanceof InstallError) throw e;
    throw preflightError(
      "preflight",
      `Cannot read compose file "${composeFile}": ${
        (e as Error).message.split("\n")[0].replace(/:$/, "")
      }`,
      "Fix the compose file or set the variable it requires.",
    );
  }
}

/**
 * Reads the CUDA needs of the bundle's engine images from their tars; `variants` collects each
 * one for the engine choice (src/host/engines.ts).
 */
async function engineNeeds(
  bundle: Bundle | undefined,
  gpu: GpuInfo,
  read: DoctorDeps["readTarIndex"],
  variants: EngineVariant[] = [],
): Promise<ImageCudaNeed[]> {
  const out: ImageCudaNeed[] = [];
  for (const img of bundle?.images.filter(isEngineImage) ?? []) {
    const abs = bundle!.files.find((f) => f.path === img.file)?.abs ?? `${bundle!.dir}/${img.file}`;
    let env: string[] = [];
    let refs = img.declaredRefs;
    try {
      const idx = await read(abs);
      variants.push(variantOf(img, idx));
      env = idx.images.flatMap((i) => i.env);
      if (refs.length === 0) refs = idx.images.flatMap((i) => i.repoTags);
    } catch (e) {
      if (e instanceof InterruptedError) throw e;
      variants.push(variantOf(img, e instanceof Error ? e : new Error(String(e))));
      out.push({
        file: img.file,
        refs,
        verdict: "unknown",
        detail: `cannot read its config: ${e instanceof Error ? e.message : e}`,
      });
      continue;
    }
    const require = requireCudaFromEnv(env);
    const j = judgeCuda(
      require,
      gpu.state === "ok" ? gpu.cudaVersion : undefined,
      gpu.driverVersion,
    );
    out.push({
      file: img.file,
      refs,
      ...(require ? { require } : {}),
      ...(j.cuda ? { cuda: j.cuda } : {}),
      verdict: j.verdict,
      detail: j.detail,
    });
  }
  return out;
}

/**
 * Runs every preflight check and returns the report; never writes anything. The network is
 * decided within 3 s; every subprocess is bounded in time.
 */
export async function runDoctor(
  ctx: Context,
  opts: DoctorOptions,
  deps: Partial<DoctorDeps> = {},
): Promise<DoctorReport> {
  const d: DoctorDeps = { ...realDeps(ctx), ...ctx.doctorDeps, ...deps };
  const project = opts.composeProject ?? DEFAULT_PROJECT;
  const docker: DockerFacts = await dockerFacts(d.run, d.compose, d.uid(), opts.compose);
  throwIfAborted(ctx.signal);

  const [network, gpu, ports, disk] = await Promise.all([
    detectNetwork(d.probes, opts.network),
    detectGpu({ run: d.run, readText: d.readText }, docker.nvidiaRuntime),
    (async () => {
      const wants = opts.composeFile
        ? await composePortWants(opts.composeFile, ctx.env, d.readText)
        : defaultPortWants();
      if (!wants) return { wants: undefined, ports: [] as PortInfo[] };
      return { wants, ports: await checkPorts(wants, project, d) };
    })(),
    (async () => {
      const items: DiskItem[] = [];
      if (docker.info?.rootDir && docker.reachable) {
        let bytes = 0;
        if (opts.imageBytes !== undefined) bytes = opts.imageBytes * 2;
        else if (opts.bundle) {
          const e = await estimateImageBytes(opts.bundle, d.inspect);
          bytes = e.imageBytes + e.tempBytes;
        }
        items.push({ what: "docker data root", path: docker.info.rootDir, bytes });
        if (opts.dbRestoreBytes) {
          items.push({
            what: "database restore (data + WAL)",
            path: docker.info.rootDir,
            bytes: opts.dbRestoreBytes,
          });
        }
      }
      const m = opts.bundle ? await estimateModelBytes(opts.bundle) : { models: 0, hfCache: 0 };
      items.push({
        what: "models dir",
        path: opts.modelsDir ?? DEFAULT_MODELS_DIR,
        bytes: opts.modelBytes ?? m.models,
      });
      if (m.hfCache > 0 || opts.hfCacheDir) {
        items.push({
          what: "HF cache dir",
          path: opts.hfCacheDir ?? DEFAULT_HF_CACHE_DIR,
          bytes: m.hfCache,
        });
      }
      items.push({
        what: "state dir",
        path: opts.stateDir ?? DEFAULT_STATE_DIR,
        bytes: STATE_DIR_BYTES,
      });
      if (opts.dbBackupBytes) {
        items.push({
          what: "database backup",
          path: `${opts.stateDir ?? DEFAULT_STATE_DIR}/${DB_BACKUPS_DIR}`,
          bytes: opts.dbBackupBytes,
        });
      }
      return await checkDisk(items, d);
    })(),
  ]);
  throwIfAborted(ctx.signal);
  const variants: EngineVariant[] = [];
  gpu.images = await engineNeeds(
    opts.bundle,
    gpu,
    (p) => d.readTarIndex(p, { signal: ctx.signal }),
    variants,
  );
  // Several builds of one engine (vLLM v0.28.0 and v0.28.0-cu129): the one this driver runs is
  // chosen, the others are "not needed on this host" instead of failures.
  const engines = chooseEngines(variants, gpu, opts.preferredEngineRefs);
  if (engines.selected && engines.engines.length > 0) gpu.engines = engines;
  const engineCk = engineChecks(engines);
  const wantsGpu = gpu.images.some((i) => i.require !== undefined) ||
    (opts.bundle?.images.some(isEngineImage) ?? false);

  const checks: Check[] = [
    ...dockerChecks(docker),
    ...diskChecks(disk),
    ...gpuChecks(gpu, wantsGpu),
    ...engineCk.checks,
    ...imageCudaChecks({ ...gpu, images: gpu.images.filter((i) => !engineCk.files.has(i.file)) }),
    ...networkChecks(network),
    ...(ports.wants === undefined
      ? [{
        id: "ports",
        title: "Ports",
        status: "fail" as const,
        detail: `Cannot read the compose file "${opts.composeFile}"`,
        hint: "Pass the path of Cortex's docker.compose.prod.yaml with --compose-file",
      }]
      : portChecks(ports.ports, project)),
  ];
  if (!docker.info?.rootDir && docker.reachable) {
    checks.push({
      id: "disk.docker",
      title: "Disk (Docker data root)",
      status: "warn",
      detail: "docker info did not tell its data root: its free space was not checked",
    });
  }
  return {
    ok: !checks.some((c) => c.status === "fail"),
    checks,
    docker: {
      cli: docker.cli,
      reachable: docker.reachable,
      ...(docker.problem ? { problem: docker.problem } : {}),
      ...(docker.error ? { error: docker.error } : {}),
      serverVersion: docker.info?.serverVersion,
      clientVersion: docker.info?.clientVersion,
      rootDir: docker.info?.rootDir,
      runtimes: docker.info?.runtimes ?? [],
      nvidiaRuntime: docker.nvidiaRuntime,
    },
    ...(docker.compose ? { compose: docker.compose } : {}),
    gpu,
    network,
    disk,
    ports: ports.ports,
  };
}
