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
import { basename, isAbsolute, join, normalize } from "node:path";
import { parse as parseYaml, stringify as stringifyYaml } from "yaml";
import type { Context } from "../context.ts";
import { preflightError } from "../errors.ts";
import { sha256Hex } from "../hash.ts";
import { BACKEND_ENV, COMPOSE_OVERRIDE } from "../layout.ts";
import type { Release } from "../state/journal.ts";
import { writeFileAtomic } from "./atomic.ts";
import { CORTEX_01_COMPOSE, CORTEX_01_ENV_FILES } from "./compose01.ts";
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
 * The compose text with each relative `env_file:` of its services pointing at a copy in `dir/env/`
 * (absolute), and the copies to write: what the checkout has now, else `fallback`'s content (by
 * path relative to the checkout). A file found nowhere is left as it was named. Pure.
 */
export function keepEnvFiles(
  text: string,
  read: (rel: string) => string | undefined,
  dir: string,
): { text: string; files: Record<string, string> } {
  // deno-lint-ignore no-explicit-any
  let doc: any;
  try {
    doc = parseYaml(text);
  } catch {
    return { text, files: {} };
  }
  const files: Record<string, string> = {};
  const keep = (entry: string): string => {
    if (isAbsolute(entry) || entry.includes("$")) return entry;
    const rel = normalize(entry).replace(/^\.\//, "");
    const content = read(rel);
    if (content === undefined) return entry;
    const to = join(dir, "env", rel.replace(/[^A-Za-z0-9._-]+/g, "_"));
    files[to] = content;
    return to;
  };
  let changed = false;
  for (const svc of Object.values(doc?.services ?? {})) {
    // deno-lint-ignore no-explicit-any
    const s = svc as any;
    if (!s?.env_file) continue;
    const list = Array.isArray(s.env_file) ? s.env_file : [s.env_file];
    s.env_file = list.map((e: unknown) => {
      if (typeof e === "string") {
        const k = keep(e);
        changed ||= k !== e;
        return k;
      }
      if (e && typeof e === "object" && typeof (e as { path?: unknown }).path === "string") {
        const p = (e as { path: string }).path;
        const k = keep(p);
        changed ||= k !== p;
        return { ...e, path: k };
      }
      return e;
    });
  }
  if (!changed) return { text, files: {} };
  return {
    text: "# A copy kept by cortex-install for a rollback; env files point at copies beside it.\n" +
      stringifyYaml(doc, { lineWidth: 0 }),
    files,
  };
}

function readSync(path: string): string | undefined {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return undefined;
  }
}

/**
 * Copies the compose file (its env files too: 0.2 no longer tracks 0.1's backend/.env.prod) and
 * the override (when there is one) into the state dir and returns their paths (written
 * atomically; the same content again writes nothing).
 */
export async function saveStackFiles(
  stateDir: string,
  release: string,
  digest: string,
  files: { composeFile: string; override?: string; cortexDir: string },
): Promise<{ composeFile: string; override?: string; sha256?: string }> {
  const dir = savedStackDir(stateDir, release, digest);
  const compose = join(dir, basename(files.composeFile));
  const kept = keepEnvFiles(
    await Deno.readTextFile(files.composeFile),
    (rel) => readSync(join(files.cortexDir, rel)),
    dir,
  );
  for (const [path, text] of Object.entries(kept.files)) {
    await writeFileAtomic(path, text, { mode: 0o600 });
  }
  await writeFileAtomic(compose, kept.text, { mode: 0o644 });
  let override: string | undefined;
  if (files.override) {
    const text = await Deno.readFile(files.override).catch(() => undefined);
    if (text) {
      override = join(dir, COMPOSE_OVERRIDE);
      await writeFileAtomic(override, text, { mode: 0o644 });
    }
  }
  return {
    composeFile: compose,
    ...(override ? { override } : {}),
    sha256: await sha256Of(files.composeFile),
  };
}

async function sha256Of(path: string): Promise<string | undefined> {
  try {
    return sha256Hex(await Deno.readFile(path));
  } catch {
    return undefined;
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
  if (to.origin !== "by-hand" && saved.sha256 && await sha256Of(composeFile) === saved.sha256) {
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
  // The env files it names: the checkout's when the operator kept them, else Cortex 0.1.1's.
  const kept = keepEnvFiles(
    text,
    (rel) => readSync(join(o.cortexDir, rel)) ?? CORTEX_01_ENV_FILES[rel],
    dir,
  );
  const write = async () => {
    for (const [path, t] of Object.entries(kept.files)) {
      await writeFileAtomic(path, t, { mode: 0o600 });
    }
    await writeFileAtomic(composeFile, kept.text, { mode: 0o644 });
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
