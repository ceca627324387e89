/**
 * GPU facts: NVIDIA driver, GPUs, the CUDA version the driver supports, the `nvidia` runtime,
 * and each engine image's `NVIDIA_REQUIRE_CUDA`. No GPU is a fact, not an error.
 */
import { compareVersions } from "./docker.ts";
import type { Check, Run } from "./types.ts";
import type { EngineChoices } from "../host/engines.ts";

export interface Gpu {
  index?: number;
  name?: string;
  driverVersion?: string;
  /** Total memory in MiB. */
  memoryMiB?: number;
  /** Compute capability, e.g. "8.9" (absent before driver 510). */
  computeCap?: string;
}

/** What an engine image of the bundle needs from the driver. */
export interface ImageCudaNeed {
  file: string;
  refs: string[];
  /** The raw `NVIDIA_REQUIRE_CUDA` value, when the image declares one. */
  require?: string;
  /** The `cuda>=X.Y` part. */
  cuda?: string;
  /** ok: driver's CUDA >= need; fail: older; unknown: no GPU/CUDA version or no requirement. */
  verdict: "ok" | "fail" | "warn" | "unknown";
  detail: string;
}

export interface GpuInfo {
  /** none: no NVIDIA driver/GPU; ok: nvidia-smi answered; driver-failed: it could not talk to it. */
  state: "none" | "ok" | "driver-failed";
  driverVersion?: string;
  /** The highest CUDA version the driver supports ("12.4"), from the nvidia-smi banner or -q. */
  cudaVersion?: string;
  gpus: Gpu[];
  kernelModule?: { version: string; open: boolean };
  nvidiaRuntime: boolean;
  images: ImageCudaNeed[];
  /** With a working GPU: per engine, the image this driver runs and those not needed here. */
  engines?: EngineChoices;
  error?: string;
}

/** The fields asked of `nvidia-smi --query-gpu`, in order. */
export const QUERY_FIELDS = ["index", "name", "driver_version", "memory.total", "compute_cap"];

const na = (v: string | undefined) =>
  v === undefined || v === "" || /^\[?N\/A\]?$/i.test(v) || /^\[Not Supported\]$/i.test(v)
    ? undefined
    : v;

/**
 * Parses `nvidia-smi --query-gpu=<fields> --format=csv[,noheader][,nounits]`. A header row, when
 * present, decides the column order; otherwise `fields` does. "N/A" and "[Not Supported]" become
 * undefined; memory accepts "81559 MiB" and "81559".
 */
export function parseQueryGpuCsv(text: string, fields: string[] = QUERY_FIELDS): Gpu[] {
  const lines = text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== "");
  if (lines.length === 0) return [];
  let cols = fields;
  const first = lines[0].split(",").map((c) => c.trim());
  if (
    first.some((c) => /^(index|name|driver_version|memory\.total|compute_cap)( \[.*\])?$/.test(c))
  ) {
    cols = first.map((c) => c.replace(/ \[.*\]$/, ""));
    lines.shift();
  }
  const gpus: Gpu[] = [];
  for (const line of lines) {
    const cells = line.split(",").map((c) => c.trim());
    if (cells.length !== cols.length) continue;
    const get = (f: string) => na(cells[cols.indexOf(f)]);
    const g: Gpu = {};
    const idx = get("index");
    if (idx !== undefined && /^\d+$/.test(idx)) g.index = Number(idx);
    const name = get("name") ?? get("gpu_name");
    if (name) g.name = name;
    const drv = get("driver_version");
    if (drv) g.driverVersion = drv;
    const mem = get("memory.total");
    const m = mem?.match(/^(\d+(?:\.\d+)?)\s*(MiB)?$/);
    if (m) g.memoryMiB = Number(m[1]);
    const cc = get("compute_cap");
    if (cc && /^\d+\.\d+$/.test(cc)) g.computeCap = cc;
    gpus.push(g);
  }
  return gpus;
}

/**
 * Reads the driver and CUDA versions from the `nvidia-smi` banner
 * ("| NVIDIA-SMI 550.54.15  Driver Version: 550.54.15  CUDA Version: 12.4 |") or from
 * `nvidia-smi -q` ("Driver Version : 550.54.15", "CUDA Version : 12.4").
 */
export function parseSmiVersions(text: string): { driverVersion?: string; cudaVersion?: string } {
  const out: { driverVersion?: string; cudaVersion?: string } = {};
  const d = text.match(/Driver Version\s*:\s*([0-9][0-9.]*)/);
  if (d) out.driverVersion = d[1];
  const c = text.match(/CUDA Version\s*:\s*([0-9]+\.[0-9]+)/);
  if (c) out.cudaVersion = c[1];
  return out;
}

/** Whether nvidia-smi said it could not reach the driver (module not loaded, version mismatch). */
export function isSmiDriverFailure(text: string): boolean {
  return /NVIDIA-SMI has failed|couldn.t communicate with the NVIDIA driver|Driver\/library version mismatch|No devices were found/i
    .test(text);
}

/** Parses `/proc/driver/nvidia/version` (proprietary and open kernel modules). */
export function parseProcDriverVersion(
  text: string,
): { version: string; open: boolean } | undefined {
  const m = text.match(/NVRM version:.*?Kernel Module(?:\s+for\s+\S+)?\s+([0-9][0-9.]*)/);
  if (!m) return undefined;
  return { version: m[1], open: /Open Kernel Module/.test(text) };
}

/** One alternative of `NVIDIA_REQUIRE_CUDA`: its comma-joined conditions. */
export interface CudaAlternative {
  cuda?: string;
  brand?: string;
  /** Driver range, e.g. [">=", "470"], ["<", "471"]. */
  driver: [string, string][];
}

/**
 * Parses an `NVIDIA_REQUIRE_CUDA` value such as `cuda>=12.4 brand=tesla,driver>=470,driver<471`.
 * Space-separated groups are alternatives (OR), comma-joined conditions all apply (AND), as
 * libnvidia-container reads them. `cuda` is the plain `cuda>=X.Y` requirement.
 */
export function parseRequireCuda(
  value: string,
): { cuda?: string; alternatives: CudaAlternative[] } {
  const alternatives: CudaAlternative[] = [];
  let cuda: string | undefined;
  for (const group of value.trim().split(/\s+/).filter((g) => g !== "")) {
    const alt: CudaAlternative = { driver: [] };
    for (const cond of group.split(",")) {
      const m = cond.trim().match(/^(cuda|brand|driver|arch)\s*(>=|<=|==|=|>|<)\s*(\S+)$/);
      if (!m) continue;
      if (m[1] === "cuda") alt.cuda = m[3];
      else if (m[1] === "brand") alt.brand = m[3];
      else if (m[1] === "driver") alt.driver.push([m[2], m[3]]);
    }
    if (alt.cuda && !alt.brand && alt.driver.length === 0 && cuda === undefined) cuda = alt.cuda;
    alternatives.push(alt);
  }
  return { cuda, alternatives };
}

function cmp(op: string, a: string, b: string): boolean {
  const c = compareVersions(a, b);
  switch (op) {
    case ">=":
      return c >= 0;
    case ">":
      return c > 0;
    case "<=":
      return c <= 0;
    case "<":
      return c < 0;
    default:
      return c === 0;
  }
}

/**
 * Judges one image's requirement against the driver (pure). The `cuda>=X.Y` part decides; when it
 * fails but a brand/driver alternative matches the driver version, the image may still run on a
 * datacenter GPU with the CUDA forward-compatibility package: warn instead of fail.
 */
export function judgeCuda(
  require: string | undefined,
  driverCuda: string | undefined,
  driverVersion: string | undefined,
): { verdict: ImageCudaNeed["verdict"]; cuda?: string; detail: string } {
  if (!require) return { verdict: "unknown", detail: "declares no NVIDIA_REQUIRE_CUDA" };
  const { cuda, alternatives } = parseRequireCuda(require);
  if (!cuda) return { verdict: "unknown", detail: `cannot read a cuda>= part in "${require}"` };
  if (!driverCuda) {
    return {
      verdict: "unknown",
      cuda,
      detail: `needs CUDA ${cuda}; the driver's CUDA version is unknown`,
    };
  }
  if (compareVersions(driverCuda, cuda) >= 0) {
    return { verdict: "ok", cuda, detail: `needs CUDA ${cuda}, the driver supports ${driverCuda}` };
  }
  const compat = driverVersion
    ? alternatives.find((a) =>
      a.brand && a.driver.length > 0 && a.driver.every(([op, v]) => cmp(op, driverVersion, v))
    )
    : undefined;
  if (compat) {
    return {
      verdict: "warn",
      cuda,
      detail: `needs CUDA ${cuda}, the driver supports ${driverCuda}; it may run only on ` +
        `brand=${compat.brand} GPUs with the CUDA forward-compatibility package`,
    };
  }
  return {
    verdict: "fail",
    cuda,
    detail: `needs CUDA ${cuda}, the driver ${driverVersion ?? ""} supports only ${driverCuda}`
      .replace(/  +/g, " "),
  };
}

/** The value of `NVIDIA_REQUIRE_CUDA` in an image config Env (unless NVIDIA_DISABLE_REQUIRE). */
export function requireCudaFromEnv(env: string[]): string | undefined {
  if (env.some((e) => /^NVIDIA_DISABLE_REQUIRE=(1|true)$/i.test(e))) return undefined;
  const e = env.find((x) => x.startsWith("NVIDIA_REQUIRE_CUDA="));
  return e ? e.slice("NVIDIA_REQUIRE_CUDA=".length) : undefined;
}

export interface GpuDeps {
  run: Run;
  /** Reads a text file; undefined when it does not exist. */
  readText: (path: string) => Promise<string | undefined>;
}

/**
 * Detects NVIDIA GPUs: `nvidia-smi --query-gpu` (retrying without compute_cap on drivers before
 * 510), the CUDA version from the banner (then `-q`), `/proc/driver/nvidia/version`. Each
 * nvidia-smi call is bounded (it can hang on a wedged driver). `nvidiaRuntime` comes from
 * `docker info`. Engine images are judged separately by `judgeImages`.
 */
export async function detectGpu(deps: GpuDeps, nvidiaRuntime = false): Promise<GpuInfo> {
  const info: GpuInfo = { state: "none", gpus: [], nvidiaRuntime, images: [] };
  const proc = await deps.readText("/proc/driver/nvidia/version");
  const km = proc ? parseProcDriverVersion(proc) : undefined;
  if (km) info.kernelModule = km;
  const t = { timeoutMs: 10_000 };
  let q = await deps.run(
    "nvidia-smi",
    [`--query-gpu=${QUERY_FIELDS.join(",")}`, "--format=csv,noheader"],
    t,
  );
  let fields = QUERY_FIELDS;
  if (q.code !== 0 && /not a valid field/i.test(q.stdout + q.stderr)) {
    fields = QUERY_FIELDS.filter((f) => f !== "compute_cap");
    q = await deps.run(
      "nvidia-smi",
      [`--query-gpu=${fields.join(",")}`, "--format=csv,noheader"],
      t,
    );
  }
  if (q.code === 127) {
    // No nvidia-smi: a loaded kernel module still says a driver is there.
    if (km) {
      info.state = "driver-failed";
      info.driverVersion = km.version;
      info.error = "nvidia-smi is not on PATH";
    }
    return info;
  }
  const out = `${q.stdout}\n${q.stderr}`;
  if (q.code !== 0 || isSmiDriverFailure(out)) {
    info.state = "driver-failed";
    info.driverVersion = km?.version;
    info.error = out.trim().split(/\r?\n/).slice(-2).join(" ");
    return info;
  }
  info.state = "ok";
  info.gpus = parseQueryGpuCsv(q.stdout, fields);
  info.driverVersion = info.gpus.find((g) => g.driverVersion)?.driverVersion ?? km?.version;
  const banner = await deps.run("nvidia-smi", [], t);
  let v = parseSmiVersions(banner.stdout);
  if (!v.cudaVersion) v = parseSmiVersions((await deps.run("nvidia-smi", ["-q"], t)).stdout);
  if (v.cudaVersion) info.cudaVersion = v.cudaVersion;
  info.driverVersion ??= v.driverVersion;
  if (info.gpus.length === 0) info.state = "driver-failed";
  return info;
}

/** Turns GPU facts into checks (pure). `wantsGpu`: the bundle ships GPU engine images. */
export function gpuChecks(g: GpuInfo, wantsGpu: boolean): Check[] {
  const checks: Check[] = [];
  if (g.state === "none") {
    checks.push({
      id: "gpu",
      title: "GPU",
      status: wantsGpu ? "warn" : "ok",
      detail: "none: no NVIDIA driver or GPU found",
      hint: wantsGpu
        ? "The bundle ships GPU engines (vLLM/llama.cpp CUDA): install the NVIDIA driver and " +
          "nvidia-container-toolkit to serve models on GPU"
        : undefined,
    });
    return checks;
  }
  if (g.state === "driver-failed") {
    checks.push({
      id: "gpu",
      title: "GPU",
      status: wantsGpu ? "fail" : "warn",
      detail: `NVIDIA driver${g.driverVersion ? ` ${g.driverVersion}` : ""} present but ` +
        `nvidia-smi cannot use it: ${g.error ?? "no GPUs listed"}`,
      hint:
        "Load the driver (reboot after a driver or kernel update, check `dmesg | grep NVRM`), " +
        "then run again",
    });
    return checks;
  }
  const list = g.gpus.map((x) =>
    `${x.index ?? "?"}: ${x.name ?? "?"}${
      x.memoryMiB ? ` ${Math.round(x.memoryMiB / 1024)} GiB` : ""
    }` +
    `${x.computeCap ? ` sm ${x.computeCap}` : ""}`
  ).join("; ");
  checks.push({
    id: "gpu",
    title: "GPU",
    status: "ok",
    detail: `driver ${g.driverVersion ?? "?"}, CUDA ${
      g.cudaVersion ?? "?"
    }, ${g.gpus.length} GPU(s): ${list}`,
  });
  checks.push({
    id: "gpu.runtime",
    title: "NVIDIA container runtime",
    status: g.nvidiaRuntime ? "ok" : wantsGpu ? "fail" : "warn",
    detail: g.nvidiaRuntime
      ? `docker info lists the "nvidia" runtime`
      : `docker info does not list an "nvidia" runtime: containers cannot use the GPUs`,
    hint: g.nvidiaRuntime ? undefined : "Install nvidia-container-toolkit, then run " +
      "`sudo nvidia-ctk runtime configure --runtime=docker && sudo systemctl restart docker`",
  });
  return checks;
}

/** Checks for the engine images' CUDA needs (pure). */
export function imageCudaChecks(g: GpuInfo): Check[] {
  return g.images.filter((i) => i.verdict !== "unknown" || g.state === "ok").map((i) => ({
    id: `gpu.cuda.${i.file}`,
    title: `CUDA for ${i.file}`,
    status: i.verdict === "fail"
      ? "fail"
      : i.verdict === "ok" || (i.verdict === "unknown" && !i.require)
      ? "ok"
      : "warn",
    detail: `"${i.refs[0] ?? i.file}" ${i.detail}`,
    hint: i.verdict === "fail"
      ? `Upgrade the NVIDIA driver to one that supports CUDA ${i.cuda} or newer, or ship an ` +
        `engine image built for CUDA ${g.cudaVersion ?? "your driver"}`
      : undefined,
  }));
}
