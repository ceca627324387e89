/**
 * GPU-aware engine images: a bundle may carry several builds of one engine (vLLM `v0.28.0` for
 * CUDA 13 and `v0.28.0-cu129` for older drivers, cortex-0.2-facts §7). Each build's
 * `NVIDIA_REQUIRE_CUDA` (read from its tar, as the doctor does) is compared with the driver, and
 * the one this host runs is chosen; the others are "not needed on this host". When none fits,
 * the error's hint carries Cortex's driver table. Without a working GPU nothing is chosen (every
 * image is kept, as before). Pure, except `readEngineVariants`, which reads tar indexes.
 */
import { compareVersions } from "../doctor/docker.ts";
import { judgeCuda, parseRequireCuda, requireCudaFromEnv } from "../doctor/gpu.ts";
import type { Check } from "../doctor/types.ts";
import { splitRef } from "../bundle/release.ts";
import type { Bundle, BundleImage, TarIndex } from "../bundle/types.ts";

/** One engine image of the bundle and what it declares it needs. */
export interface EngineVariant {
  /** Bundle-relative tar path. */
  file: string;
  /** The ref it is known by (declared, else the tar's first RepoTag). */
  ref: string;
  /** Repository without tag: the engine the variants are builds of. */
  repository: string;
  tag: string;
  /** The release policy role ("vllm", "llamacpp"), when it matched one. */
  role?: string;
  /** The image config's `NVIDIA_REQUIRE_CUDA`, when it declares one. */
  require?: string;
  /** Why the tar could not be read, when it could not. */
  readError?: string;
}

/** The driver facts the choice needs (a subset of the doctor's GpuInfo). */
export interface DriverFacts {
  state: "none" | "ok" | "driver-failed";
  driverVersion?: string;
  /** The highest CUDA version the driver supports (nvidia-smi banner or -q). */
  cudaVersion?: string;
}

/** A variant judged against this driver. */
export interface JudgedVariant extends EngineVariant {
  /** ok: runs; warn: may run (CUDA forward compatibility only); fail: does not; unknown. */
  verdict: "ok" | "warn" | "fail" | "unknown";
  /** The `cuda>=X.Y` it needs, when known. */
  cuda?: string;
  /** How it was judged: its NVIDIA_REQUIRE_CUDA, Cortex's driver table by tag, or not at all. */
  by: "image" | "table" | "none";
  detail: string;
}

/** The choice for one engine (repository). */
export interface EngineChoice {
  repository: string;
  role?: string;
  /** The variant this host runs; undefined when nothing was chosen (no GPU, or unknown). */
  chosen?: JudgedVariant;
  /** The other variants, not loaded on this host. */
  notNeeded: JudgedVariant[];
  /** Every variant, judged, in bundle order. */
  variants: JudgedVariant[];
  /** Set when no variant runs on this driver (the install must stop before writing). */
  error?: { message: string; hint: string };
}

export interface EngineChoices {
  /** True when a working GPU made a choice possible (state "ok"). */
  selected: boolean;
  engines: EngineChoice[];
  /** The first error of any engine, for callers that stop on it. */
  error?: { message: string; hint: string };
}

/**
 * Cortex's driver -> vLLM image table (docs/models/nemotron-3-super.md@R; cortex-0.2-facts §7).
 * versions.env and UPDATE_NVIDIA_DRIVERS.md say cu129 for 550-579; NVIDIA's CUDA 12.9 needs
 * 575.51, which the docs' table follows, so we do too (and the image's own NVIDIA_REQUIRE_CUDA
 * decides first whenever it declares one).
 */
export const VLLM_DRIVER_TABLE: readonly { minDriver: string; tag: string | null }[] = [
  { minDriver: "580", tag: "v0.28.0" },
  { minDriver: "575.51", tag: "v0.28.0-cu129" },
  { minDriver: "550", tag: "v0.24.0-ubuntu2404" },
  { minDriver: "0", tag: null },
];

/** The driver table as one line for hints. */
export const DRIVER_TABLE_TEXT = "Cortex's driver table for vLLM: driver >= 580: " +
  "vllm/vllm-openai:v0.28.0 (CUDA 13); 575.51-579: vllm/vllm-openai:v0.28.0-cu129; " +
  "550-575.50: vllm/vllm-openai:v0.24.0-ubuntu2404; below 550: upgrade the NVIDIA driver. " +
  "llama.cpp server-cuda-b10731 (CUDA 12.8) needs >= 570.";

/**
 * Minimum Linux driver of each CUDA toolkit's GA release (NVIDIA's CUDA release notes, table 3),
 * for a driver whose own CUDA version is unknown (nvidia-smi without a CUDA field).
 */
const CUDA_MIN_DRIVER: readonly [string, string][] = [
  ["13.0", "580.65.06"],
  ["12.9", "575.51.03"],
  ["12.8", "570.26"],
  ["12.6", "560.28.03"],
  ["12.5", "555.42.02"],
  ["12.4", "550.54.14"],
  ["12.3", "545.23.06"],
  ["12.2", "535.54.03"],
  ["12.1", "530.30.02"],
  ["12.0", "525.60.13"],
  ["11.8", "520.61.05"],
];

/** The least driver version that supports CUDA `cuda` (pure), when the table knows it. */
export function minDriverForCuda(cuda: string): string | undefined {
  const [maj, min] = cuda.split(".").map(Number);
  const hit = CUDA_MIN_DRIVER.find(([c]) => {
    const [a, b] = c.split(".").map(Number);
    return a === maj && b === (min ?? 0);
  });
  return hit?.[1];
}

/** The least driver Cortex's table asks for a vLLM tag (pure), when it names that tag. */
export function tableMinDriver(tag: string): string | undefined {
  if (tag === "v0.28.0") return "580";
  if (/-cu129$/.test(tag)) return "575.51";
  if (tag === "v0.24.0-ubuntu2404") return "550";
  return undefined;
}

/** The vLLM tag Cortex's table gives this driver, or null for "upgrade the driver" (pure). */
export function tableTagFor(driverVersion: string): string | null {
  for (const row of VLLM_DRIVER_TABLE) {
    if (compareVersions(driverVersion, row.minDriver) >= 0) return row.tag;
  }
  return null;
}

/** Whether a bundle image is an inference engine (role vllm/llamacpp/engine, or by name). */
export function isEngine(img: BundleImage): boolean {
  if (img.bundleRole === "engine") return true;
  if (img.role) return /^(vllm|llamacpp|llama\.cpp|engine)/i.test(img.role);
  return /vllm|llama/i.test([img.file, ...img.declaredRefs].join(" "));
}

/** Judges one variant against the driver (pure). */
export function judgeVariant(v: EngineVariant, d: DriverFacts): JudgedVariant {
  if (d.state !== "ok") {
    return { ...v, verdict: "unknown", by: "none", detail: "no working NVIDIA driver" };
  }
  if (v.readError) {
    return { ...v, verdict: "unknown", by: "none", detail: `cannot read it: ${v.readError}` };
  }
  if (v.require) {
    const j = judgeCuda(v.require, d.cudaVersion, d.driverVersion);
    if (j.verdict !== "unknown") {
      return {
        ...v,
        verdict: j.verdict,
        ...(j.cuda ? { cuda: j.cuda } : {}),
        by: "image",
        detail: j.detail,
      };
    }
    // The driver's CUDA version is unknown: compare its version with CUDA's minimum driver.
    const cuda = parseRequireCuda(v.require).cuda;
    const min = cuda ? minDriverForCuda(cuda) : undefined;
    if (cuda && min && d.driverVersion) {
      const fits = compareVersions(d.driverVersion, min) >= 0;
      return {
        ...v,
        verdict: fits ? "ok" : "fail",
        cuda,
        by: "image",
        detail: `needs CUDA ${cuda} (driver >= ${min}), the driver is ${d.driverVersion}`,
      };
    }
  }
  const min = tableMinDriver(v.tag);
  if (min && d.driverVersion) {
    const fits = compareVersions(d.driverVersion, min) >= 0;
    return {
      ...v,
      verdict: fits ? "ok" : "fail",
      by: "table",
      detail:
        `Cortex's driver table asks driver >= ${min} for "${v.tag}", the driver is ${d.driverVersion}`,
    };
  }
  return {
    ...v,
    verdict: "unknown",
    by: "none",
    detail: v.require
      ? `needs "${v.require}"; the driver's CUDA version is unknown`
      : "declares no NVIDIA_REQUIRE_CUDA",
  };
}

const cudaOf = (j: JudgedVariant) => j.cuda ?? "0";

/**
 * Chooses, per engine (repository), the variant this driver runs (pure). Preference: the
 * `preferred` ref for that repository (versions.env's VLLM_IMAGE, say) when it runs; else the
 * variant needing the newest CUDA that runs (`ok`), then one that may run (`warn`). When the
 * driver is known and every variant fails, the engine gets an error. Without a working GPU (or
 * when no variant can be judged) nothing is chosen.
 */
export function chooseEngines(
  variants: readonly EngineVariant[],
  driver: DriverFacts,
  preferred: readonly string[] = [],
): EngineChoices {
  const groups = new Map<string, EngineVariant[]>();
  for (const v of variants) {
    const g = groups.get(v.repository) ?? [];
    g.push(v);
    groups.set(v.repository, g);
  }
  const engines: EngineChoice[] = [];
  for (const [repository, group] of groups) {
    const judged = group.map((v) => judgeVariant(v, driver));
    const role = group.find((v) => v.role)?.role;
    const choice: EngineChoice = {
      repository,
      ...(role ? { role } : {}),
      notNeeded: [],
      variants: judged,
    };
    engines.push(choice);
    if (driver.state !== "ok") continue;
    const pick = (verdict: JudgedVariant["verdict"]) => {
      const fits = judged.filter((j) => j.verdict === verdict);
      return fits.find((j) => preferred.includes(j.ref)) ??
        [...fits].sort((a, b) => compareVersions(cudaOf(b), cudaOf(a)))[0];
    };
    const chosen = pick("ok") ?? pick("warn");
    if (chosen) {
      choice.chosen = chosen;
      choice.notNeeded = judged.filter((j) => j !== chosen);
      continue;
    }
    if (judged.every((j) => j.verdict === "fail")) {
      const why = judged.map((j) => `"${j.ref}" ${j.detail}`).join("; ");
      choice.error = {
        message: `Cannot serve models with "${repository}": none of its ${judged.length} ` +
          `image(s) in the bundle runs on NVIDIA driver ${driver.driverVersion ?? "?"}${
            driver.cudaVersion ? ` (CUDA ${driver.cudaVersion})` : ""
          }: ${why}`,
        hint: `${DRIVER_TABLE_TEXT} Ship the image this driver runs (set VLLM_IMAGE on the ` +
          "source host before writing the bundle), or upgrade the driver.",
      };
    }
  }
  const error = engines.find((e) => e.error)?.error;
  return { selected: driver.state === "ok", engines, ...(error ? { error } : {}) };
}

/** A variant from a bundle image and its tar index (pure). */
export function variantOf(img: BundleImage, index: TarIndex | Error): EngineVariant {
  const tags = index instanceof Error ? [] : index.images.flatMap((i) => i.repoTags);
  const ref = img.declaredRefs[0] ?? tags[0] ?? img.file;
  const { repository, tag } = splitRef(ref);
  if (index instanceof Error) {
    return {
      file: img.file,
      ref,
      repository,
      tag,
      ...(img.role ? { role: img.role } : {}),
      readError: index.message,
    };
  }
  const require = requireCudaFromEnv(index.images.flatMap((i) => i.env));
  return {
    file: img.file,
    ref,
    repository,
    tag,
    ...(img.role ? { role: img.role } : {}),
    ...(require ? { require } : {}),
  };
}

/**
 * Reads the engine images' `NVIDIA_REQUIRE_CUDA` from their tars (headers and the config only;
 * `readIndex` is readTarIndex, injected). A tar that cannot be read gives a variant with
 * `readError` (judged unknown).
 */
export async function readEngineVariants(
  bundle: Bundle,
  readIndex: (path: string) => Promise<TarIndex>,
): Promise<EngineVariant[]> {
  const out: EngineVariant[] = [];
  for (const img of bundle.images.filter(isEngine)) {
    const abs = bundle.files.find((f) => f.path === img.file)?.abs ?? `${bundle.dir}/${img.file}`;
    let index: TarIndex | Error;
    try {
      index = await readIndex(abs);
    } catch (e) {
      index = e instanceof Error ? e : new Error(String(e));
    }
    out.push(variantOf(img, index));
  }
  return out;
}

/**
 * Doctor checks for the engine choice (pure): per variant, ok (chosen and runs), warn (may run),
 * ok "not needed on this host", or fail with Cortex's driver table when none runs. Engines with
 * no choice are left out (the caller keeps its per-image CUDA checks for them).
 */
export function engineChecks(c: EngineChoices): { checks: Check[]; files: Set<string> } {
  const checks: Check[] = [];
  const files = new Set<string>();
  for (const e of c.engines) {
    if (!e.chosen && !e.error) continue;
    for (const v of e.variants) {
      files.add(v.file);
      const id = `gpu.cuda.${v.file}`;
      const title = `CUDA for ${v.file}`;
      if (e.error) {
        checks.push({
          id,
          title,
          status: "fail",
          detail: `"${v.ref}" ${v.detail}`,
          hint: e.error.hint,
        });
      } else if (v === e.chosen) {
        checks.push({
          id,
          title,
          status: v.verdict === "ok" ? "ok" : "warn",
          detail: `"${v.ref}" runs on this host: ${v.detail}`,
        });
      } else {
        checks.push({
          id,
          title,
          status: "ok",
          detail: `"${v.ref}" not needed on this host ("${e.chosen!.ref}" runs here): ${v.detail}`,
        });
      }
    }
  }
  return { checks, files };
}
