/** Where the bundle and the Cortex dir are, when no flag says: beside the executable, then cwd. */
import type { Context } from "../context.ts";
import { UsageError } from "../errors.ts";
import {
  ADMIN_BUNDLE_PREFIX,
  COMPOSE_DEV,
  COMPOSE_PROD,
  DEFAULT_BUNDLE_DIR,
  DEFAULT_BUNDLE_DIR_02,
  DEFAULT_BUNDLE_NAMES,
  DEFAULT_CORTEX_DIR,
} from "../layout.ts";

async function isDir(p: string): Promise<boolean> {
  try {
    return (await Deno.stat(p)).isDirectory;
  } catch {
    return false;
  }
}

/** Absolute form of a user-given path (relative to the working directory). */
export function absPath(ctx: Context, p: string): string {
  return p.startsWith("/") ? p : `${ctx.cwd}/${p}`.replace(/\/\.\//g, "/").replace(/\/\.$/, "");
}

/**
 * Finds a directory: the flag's value (must exist), else `name` beside the executable, else in
 * the working directory; else asks on a TTY, else a usage error naming the flag.
 */
export async function locateDir(
  ctx: Context,
  flagValue: string | undefined,
  flag: string,
  defaultName: string,
  what: string,
  allowPrompt: boolean,
): Promise<string> {
  if (flagValue) {
    const p = absPath(ctx, flagValue);
    if (!(await isDir(p))) {
      throw new UsageError(
        `${what} "${flagValue}" is not a directory`,
        `Check the path given to --${flag}.`,
      );
    }
    return p;
  }
  for (const base of [ctx.execDir, ctx.cwd]) {
    const p = `${base}/${defaultName}`;
    if (await isDir(p)) return p;
  }
  if (allowPrompt && ctx.interactive) {
    ctx.progress.clear();
    // dax only for the prompt: imported when one is shown (start-up of every other run).
    const { $ } = await import("dax");
    const answer = await $.prompt(`${what} not found. Path to it`);
    if (answer && (await isDir(absPath(ctx, answer)))) return absPath(ctx, answer);
    throw new UsageError(`${what} "${answer}" is not a directory`, `Pass --${flag} DIR.`);
  }
  throw new UsageError(
    `No ${what.toLowerCase()} given and none found as "${defaultName}" beside the executable (${ctx.execDir}) or in the working directory (${ctx.cwd})`,
    `Pass --${flag} DIR.`,
  );
}

/**
 * The bundle folders looked for in one base folder, in order: Cortex 0.2's script bundle
 * (`cortex-offline-bundle`), the Admin UI's exports (`cortex-bundle-YYYYMMDD-HHMMSS`, the newest
 * by its name's time stamp first), then Cortex 0.1's package (`cortex-offline-images`).
 */
export async function bundleCandidates(base: string): Promise<string[]> {
  const exports: string[] = [];
  try {
    for await (const e of Deno.readDir(base)) {
      if (e.name.startsWith(ADMIN_BUNDLE_PREFIX) && await isDir(`${base}/${e.name}`)) {
        exports.push(e.name);
      }
    }
  } catch { /* an unreadable base has none */ }
  exports.sort().reverse();
  return [DEFAULT_BUNDLE_DIR_02, ...exports, DEFAULT_BUNDLE_DIR];
}

/**
 * Finds the bundle: `--bundle`, else the first of `bundleCandidates` beside the executable,
 * then in the working directory; else asks on a TTY, else a usage error naming the flag.
 */
export async function locateBundle(
  ctx: Context,
  v: string | undefined,
  prompt = false,
): Promise<string> {
  if (!v) {
    for (const base of [ctx.execDir, ctx.cwd]) {
      const names = await bundleCandidates(base);
      for (const name of names) {
        const p = `${base}/${name}`;
        if (!(await isDir(p))) continue;
        const others = names.filter((n) => n !== name && n.startsWith(ADMIN_BUNDLE_PREFIX));
        if (others.length > 0 && name.startsWith(ADMIN_BUNDLE_PREFIX)) {
          ctx.log.info(
            `Using the newest Admin-UI bundle "${p}" (also there: ${others.join(", ")})`,
          );
        }
        return p;
      }
    }
  }
  return await locateDir(ctx, v, "bundle", DEFAULT_BUNDLE_NAMES, "Bundle", prompt);
}
export const locateCortexDir = (ctx: Context, v: string | undefined, prompt = false) =>
  locateDir(ctx, v, "cortex-dir", DEFAULT_CORTEX_DIR, "Cortex dir", prompt);

/** `--compose-file`, else prod, else dev in the Cortex dir. */
export async function locateComposeFile(
  ctx: Context,
  cortexDir: string,
  flagValue: string | undefined,
): Promise<string> {
  if (flagValue) {
    const p = flagValue.startsWith("/") ? flagValue : absPath(ctx, flagValue);
    try {
      await Deno.stat(p);
    } catch {
      throw new UsageError(`Compose file "${flagValue}" does not exist`);
    }
    return p;
  }
  for (const name of [COMPOSE_PROD, COMPOSE_DEV]) {
    try {
      await Deno.stat(`${cortexDir}/${name}`);
      return `${cortexDir}/${name}`;
    } catch { /* next */ }
  }
  throw new UsageError(
    `No ${COMPOSE_PROD} or ${COMPOSE_DEV} in "${cortexDir}"`,
    "Pass --compose-file FILE or --cortex-dir DIR.",
  );
}
