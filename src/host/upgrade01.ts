/**
 * Cortex 0.1 -> 0.2 in place (issue 9 §3). The operator updates the checkout to 0.2 (0.2's tracked
 * files replace 0.1's; backend/.env stays), then runs `install` with a 0.2 bundle. This module:
 *
 * - finds the 0.1 installed: the journal's current release on the 0.1 line, or, without a
 *   journal, a 0.1 stack running from this checkout (installed by hand with Cortex's scripts:
 *   compose labels, backend/.env): `byHandRelease` records it as a release, so that the backup,
 *   the rollback and the report treat both the same way;
 * - carries the operator's settings from backend/.env (which 0.2's containers never read) into
 *   the root .env: offline mode, the models and HF cache dirs, the gateway's internal token and
 *   admin, and the tuning keys 0.2's compose interpolates; backend/.env itself is left as it is;
 * - keeps a copy of each release's compose file and override in the state dir
 *   (`saveStackFiles`), so that a rollback runs the 0.1 stack as it ran although the checkout
 *   now holds 0.2's files (`rollbackFiles`). A hand-installed 0.1 has no copy: its compose file is
 *   Cortex 0.1.1's of the same name (compose01.ts) and an override pins each service to the image
 *   its container ran.
 */
import { basename, join } from "node:path";
import type { Context } from "../context.ts";
import { preflightError } from "../errors.ts";
import { sha256Hex } from "../hash.ts";
import { BACKEND_ENV, COMPOSE_OVERRIDE } from "../layout.ts";
import type { Release } from "../state/journal.ts";
import { writeFileAtomic } from "./atomic.ts";
import { CORTEX_01_COMPOSE } from "./compose01.ts";
import { envRecord, parseEnv, redact } from "./dotenv.ts";
import { OVERRIDE_HEADER, renderOverride } from "./override.ts";

/** The release line of a recorded release ("0.1", "0.2"). */
export function releaseLine(r: Pick<Release, "release" | "line">): string {
  if (r.line) return r.line;
  const m = /^v?(\d+)\.(\d+)/.exec(r.release);
  return m ? `${m[1]}.${m[2]}` : r.release;
}

/** Whether installing a bundle of line `to` over release `from` crosses from 0.1 to 0.2. */
export function isUpgrade01to02(
  from: Pick<Release, "release" | "line"> | undefined,
  to: string,
): boolean {
  return !!from && releaseLine(from) === "0.1" && to === "0.2";
}

// ---------------------------------------------------------------------------------------------
// Copies of each release's compose files in the state dir
// ---------------------------------------------------------------------------------------------

/** Where a release's copies go: `<state>/compose/<release>-<digest 12>/`. */
export function savedStackDir(stateDir: string, release: string, digest: string): string {
  const safe = release.replace(/[^A-Za-z0-9._-]+/g, "_");
  const d = digest.replace(/^sha256:/, "").replace(/[^A-Za-z0-9]/g, "").slice(0, 12);
  return join(stateDir, "compose", `${safe}-${d}`);
}

/**
 * Copies the compose file and the override (when there is one) into the state dir and returns
 * their paths (written atomically; the same content again writes nothing).
 */
export async function saveStackFiles(
  stateDir: string,
  release: string,
  digest: string,
  files: { composeFile: string; override?: string },
): Promise<{ composeFile: string; override?: string }> {
  const dir = savedStackDir(stateDir, release, digest);
  const compose = join(dir, basename(files.composeFile));
  await writeFileAtomic(compose, await Deno.readFile(files.composeFile), { mode: 0o644 });
  let override: string | undefined;
  if (files.override) {
    const text = await Deno.readFile(files.override).catch(() => undefined);
    if (text) {
      override = join(dir, COMPOSE_OVERRIDE);
      await writeFileAtomic(override, text, { mode: 0o644 });
    }
  }
  return { composeFile: compose, ...(override ? { override } : {}) };
}

async function sameContent(a: string, b: string): Promise<boolean> {
  try {
    const [x, y] = await Promise.all([Deno.readFile(a), Deno.readFile(b)]);
    return sha256Hex(x) === sha256Hex(y);
  } catch {
    return false;
  }
}

/**
 * The compose files a rollback to `to` runs: the checkout's when they still hold what `to` ran,
 * else the copies saved in the state dir (the checkout was updated in place since).
 */
export async function rollbackFiles(
  to: Release,
  fallback: { composeFile: string },
): Promise<{ files: string[]; fromState: boolean }> {
  const composeFile = to.stack?.composeFile ?? fallback.composeFile;
  const checkout = [composeFile, ...(to.override ? [to.override] : [])];
  const saved = to.stack?.saved;
  if (!saved) return { files: checkout, fromState: false };
  if (to.origin !== "by-hand" && await sameContent(composeFile, saved.composeFile)) {
    return { files: checkout, fromState: false };
  }
  return {
    files: [saved.composeFile, ...(saved.override ? [saved.override] : [])],
    fromState: true,
  };
}

// ---------------------------------------------------------------------------------------------
// The operator's 0.1 settings carried into 0.2's root .env
// ---------------------------------------------------------------------------------------------

/**
 * Keys of 0.1's backend/.env that 0.2's compose interpolates from the root .env, carried when the
 * root .env does not set them. Everything else in backend/.env stays there, unread by 0.2.
 */
export const CARRIED_KEYS = [
  "OFFLINE_MODE",
  "CORTEX_MODELS_DIR",
  "HF_CACHE_DIR",
  "INTERNAL_VLLM_API_KEY",
  "ADMIN_BOOTSTRAP_USERNAME",
  "ADMIN_BOOTSTRAP_PASSWORD",
  "ADMIN_BOOTSTRAP_ORG",
  "REQUEST_MAX_BODY_BYTES",
  "RATE_LIMIT_ENABLED",
  "RATE_LIMIT_RPS",
  "RATE_LIMIT_BURST",
  "CONCURRENCY_LIMIT_ENABLED",
  "MAX_CONCURRENT_STREAMS_PER_ID",
] as const;

/** Placeholders of Cortex 0.1's env files: never carried (0.2 generates or asks instead). */
const PLACEHOLDERS = new Set(["replace-with-secret", "dev-internal-token", "changeme", ""]);

export interface Carry01 {
  /** Values to carry (secrets inside: never print; `shown` is for people). */
  values: Record<string, string>;
  /** What people see: key, redacted value, where from. */
  shown: { key: string; value: string }[];
  /** Why a key of backend/.env was not carried. */
  notes: string[];
  /** backend/.env's path, when it exists. */
  from?: string;
}

/**
 * The settings carried from `<cortexDir>/backend/.env` (pure but for reading it): each
 * CARRIED_KEYS key set there and not set (non-blank) in the root .env now, placeholders left out.
 */
export async function planCarry01(cortexDir: string, rootEnvText?: string): Promise<Carry01> {
  const path = join(cortexDir, BACKEND_ENV);
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch {
    return { values: {}, shown: [], notes: [] };
  }
  const backend = envRecord(parseEnv(text));
  const root = envRecord(parseEnv(rootEnvText ?? ""));
  const values: Record<string, string> = {};
  const notes: string[] = [];
  for (const k of CARRIED_KEYS) {
    const v = backend[k];
    if (v === undefined) continue;
    if ((root[k] ?? "").trim() !== "") continue;
    if (PLACEHOLDERS.has(v.trim())) {
      notes.push(`${k} of ${BACKEND_ENV} is a placeholder: not carried`);
      continue;
    }
    values[k] = v;
  }
  return {
    values,
    shown: Object.entries(values).map(([key, v]) => ({ key, value: redact(key, v) })),
    notes,
    from: path,
  };
}

/** OFFLINE_MODE of 0.1 as a network mode ("true"/"1"/"yes" offline). */
export function carriedNetwork(c: Carry01): "offline" | "online" | undefined {
  const v = c.values.OFFLINE_MODE?.trim().toLowerCase();
  if (v === undefined) return undefined;
  return ["true", "1", "yes", "on"].includes(v) ? "offline" : "online";
}

// ---------------------------------------------------------------------------------------------
// A Cortex 0.1 installed by hand (no journal)
// ---------------------------------------------------------------------------------------------

/** A container of the 0.1 stack found running. */
interface Found {
  service: string;
  ref: string;
  imageId: string;
  project: string;
  configFiles: string;
  startedAt?: string;
}

async function findStack(
  ctx: Context,
  filter: string,
): Promise<Found[]> {
  const ps = await ctx.docker.run(["ps", "-q", "--no-trunc", "--filter", filter], {
    signal: ctx.signal,
  });
  const ids = ps.code === 0 ? ps.stdout.split(/\s+/).filter(Boolean) : [];
  if (!ids.length) return [];
  const r = await ctx.docker.run(["inspect", ...ids], { signal: ctx.signal });
  let json: unknown[] = [];
  try {
    json = JSON.parse(r.stdout || "[]");
  } catch {
    return [];
  }
  // deno-lint-ignore no-explicit-any
  return (json as any[]).map((c) => {
    const l: Record<string, string> = c?.Config?.Labels ?? {};
    return {
      service: l["com.docker.compose.service"] ?? "",
      ref: String(c?.Config?.Image ?? ""),
      imageId: String(c?.Image ?? ""),
      project: l["com.docker.compose.project"] ?? "",
      configFiles: l["com.docker.compose.project.config_files"] ?? "",
      startedAt: c?.State?.StartedAt,
    };
  }).filter((c) => c.service && c.ref);
}

/**
 * A Cortex 0.1 running from this checkout without a journal (installed by hand): its gateway and
 * postgres run under compose labels, and backend/.env exists. Returns it as a release to upgrade
 * from, and `write`, which saves its compose copy and an override pinning its images into the
 * state dir (called once the install goes on: the plan writes nothing), or undefined when nothing
 * runs. Throws a preflight error when it runs under another project name
 * than the install's (the 0.2 stack would start beside it, on an empty database).
 */
export async function byHandRelease(
  ctx: Context,
  o: { cortexDir: string; composeFile: string; project: string; stateDir: string },
): Promise<{ release: Release; write: () => Promise<void> } | undefined> {
  try {
    await Deno.stat(join(o.cortexDir, BACKEND_ENV));
  } catch {
    return undefined;
  }
  let found = await findStack(ctx, `label=com.docker.compose.project=${o.project}`);
  if (!found.some((c) => c.service === "gateway")) {
    const dir = await Deno.realPath(o.cortexDir).catch(() => o.cortexDir);
    const other = await findStack(ctx, `label=com.docker.compose.project.working_dir=${dir}`);
    const gw = other.find((c) => c.service === "gateway");
    if (gw) {
      throw preflightError(
        "preflight",
        `Cannot upgrade the Cortex 0.1 running from "${o.cortexDir}": it runs as compose project "${gw.project}", not "${o.project}"; Cortex 0.2 would start beside it on an empty database`,
        `Pass --project-name ${gw.project}, then run again.`,
      );
    }
    return undefined;
  }
  found = found.filter((c) => c.project === o.project);
  const gateway = found.find((c) => c.service === "gateway")!;
  const base = basename(gateway.configFiles.split(",")[0] || o.composeFile);
  const text = CORTEX_01_COMPOSE[base] ?? CORTEX_01_COMPOSE["docker.compose.prod.yaml"];
  const digest = `by-hand:${
    sha256Hex(new TextEncoder().encode(found.map((c) => c.imageId).join()))
  }`;
  const dir = savedStackDir(o.stateDir, "0.1-by-hand", digest);
  const composeFile = join(dir, CORTEX_01_COMPOSE[base] ? base : "docker.compose.prod.yaml");
  const override = join(dir, COMPOSE_OVERRIDE);
  const services: Record<string, { image: string }> = {};
  for (const c of found) services[c.service] = { image: c.ref };
  const overrideText = renderOverride({ services }, OVERRIDE_HEADER);
  const write = async () => {
    await writeFileAtomic(composeFile, text, { mode: 0o644 });
    await writeFileAtomic(override, overrideText, { mode: 0o644 });
  };
  const images: Record<string, string> = {};
  for (const c of found) images[c.ref] = c.imageId;
  const release: Release = {
    release: "0.1 (installed by hand)",
    line: "0.1",
    origin: "by-hand",
    bundleDigest: digest,
    bundleDir: "",
    installedAt: gateway.startedAt ?? ctx.now().toISOString(),
    engineRefs: {},
    images,
    envFiles: {},
    outcome: "installed",
    stack: {
      cortexDir: o.cortexDir,
      composeFile: gateway.configFiles.split(",")[0] || o.composeFile,
      project: o.project,
      profiles: [],
      readiness: [],
      saved: { composeFile, override },
    },
  };
  return { release, write };
}
