/**
 * Staging folders of the models step: named with STAGING_PREFIX beside their target (same
 * filesystem, so the final rename is atomic), removed when a run fails, and the leftovers of a
 * killed run removed by the next one.
 */
import { STAGING_PREFIX } from "../../layout.ts";
import { join } from "./tree.ts";

/** Removes a staging folder (never follows symlinks; hardlinks only lose a name). */
export async function removeStaging(path: string): Promise<void> {
  try {
    await Deno.remove(path, { recursive: true });
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
}

// Cortex lists the direct subfolders of the models dir, so a staging folder there could show up
// as a model; a dot-prefixed name is the best we can do (the UI and most tools skip hidden
// folders), and the rename makes the real folder appear in one step.
export const stagingName = (what: string) =>
  `${STAGING_PREFIX}${what.replace(/[^A-Za-z0-9._-]/g, "_")}-${Deno.pid}`;

/**
 * Removes staging folders left by a killed run in the models dir and the HF cache dir (only
 * names starting with STAGING_PREFIX; those of another live cortex-install process are kept).
 * Returns the removed paths.
 */
export async function cleanStaging(modelsDir: string, hfCacheDir: string): Promise<string[]> {
  const removed: string[] = [];
  for (const dir of new Set([modelsDir, hfCacheDir])) {
    let entries: Deno.DirEntry[] = [];
    try {
      for await (const e of Deno.readDir(dir)) entries.push(e);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) continue;
      throw e;
    }
    entries = entries.filter((e) => e.name.startsWith(STAGING_PREFIX));
    for (const e of entries) {
      const pid = Number(/-(\d+)$/.exec(e.name)?.[1]);
      if (Number.isInteger(pid) && pid !== Deno.pid && await processAlive(pid)) continue;
      await removeStaging(join(dir, e.name));
      removed.push(join(dir, e.name));
    }
  }
  return removed;
}

async function processAlive(pid: number): Promise<boolean> {
  try {
    const cmd = await Deno.readTextFile(`/proc/${pid}/cmdline`);
    return /deno|cortex-install/.test(cmd);
  } catch {
    return false;
  }
}
