/**
 * Cortex 0.2 script bundles carry Python wheels (`wheels/*.whl`, `requirements.txt`) for
 * `make build-offline`, which builds the gateway image from source on an offline host. Cortex's
 * loader copies them to `backend/wheels/` when that folder is absent; so do we: staged beside
 * the target and renamed into place, never over an existing folder. No checksum covers them
 * (Cortex lists none): `verify` says so, and nothing trusted depends on them.
 */
import { join } from "node:path";
import type { Context } from "../context.ts";
import { copyHashed } from "../copy.ts";
import { asInterrupted, throwIfAborted } from "../errors.ts";
import { fsyncDir } from "../fsutil.ts";
import { WHEELS_DIR } from "../layout.ts";
import { removeStaging, stagingName } from "./models/staging.ts";
import { lstatOrNull } from "./models/tree.ts";

export interface WheelsPlan {
  /** Bundle-relative files under wheels/. */
  files: string[];
  /** `<cortexDir>/backend/wheels`. */
  target: string;
  /** copy: the target is absent; kept: it exists (never replaced); skipped: no backend/. */
  action: "copy" | "kept" | "skipped";
  reason?: string;
}

/** Plans the wheels' copy (reads only); undefined when the bundle carries none. */
export async function planWheels(
  bundle: { dir: string; wheels?: string[] },
  cortexDir: string,
): Promise<WheelsPlan | undefined> {
  if (!bundle.wheels || bundle.wheels.length === 0) return undefined;
  const backend = join(cortexDir, "backend");
  const target = join(backend, WHEELS_DIR);
  const base = { files: bundle.wheels, target };
  if (!(await lstatOrNull(backend))?.isDirectory) {
    return { ...base, action: "skipped", reason: `the Cortex dir has no backend/ folder` };
  }
  if (await lstatOrNull(target)) {
    return { ...base, action: "kept", reason: "backend/wheels/ exists: kept as it is" };
  }
  return { ...base, action: "copy" };
}

/**
 * Copies the wheels into a staging folder inside backend/ and renames it to backend/wheels/.
 * Returns the number of files and bytes copied; a folder that appeared meanwhile is kept and
 * nothing is copied.
 */
export async function copyWheels(
  ctx: Context,
  bundleDir: string,
  plan: WheelsPlan,
): Promise<{ files: number; bytes: number; kept: boolean }> {
  const backend = plan.target.slice(0, plan.target.lastIndexOf("/"));
  const staging = join(backend, stagingName(WHEELS_DIR));
  await removeStaging(staging);
  let bytes = 0;
  try {
    await Deno.mkdir(staging);
    await Deno.chmod(staging, 0o755);
    for (const rel of plan.files) {
      throwIfAborted(ctx.signal);
      const sub = rel.slice(WHEELS_DIR.length + 1);
      const dst = join(staging, sub);
      const parent = dst.slice(0, dst.lastIndexOf("/"));
      if (parent !== staging) await Deno.mkdir(parent, { recursive: true });
      bytes += (await copyHashed(join(bundleDir, rel), dst, { signal: ctx.signal })).size;
      await Deno.chmod(dst, 0o644);
    }
    await fsyncDir(staging);
    if (await lstatOrNull(plan.target)) {
      await removeStaging(staging);
      return { files: 0, bytes: 0, kept: true };
    }
    await Deno.rename(staging, plan.target);
    await fsyncDir(backend);
  } catch (e) {
    await removeStaging(staging);
    throw asInterrupted(e, ctx.signal);
  }
  return { files: plan.files.length, bytes, kept: false };
}
