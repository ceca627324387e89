/**
 * The settings step: writes `backend/.env` (what operators and Cortex's docs look at), the root
 * `.env` (the keys the compose file interpolates, e.g. VLLM_IMAGE, CORTEX_MODELS_DIR) and the
 * compose override (pins images, adds backend/.env to the gateway's env_file).
 * `planSettings` reads and computes everything without writing; `applySettings` writes only
 * what changed, atomically, with a timestamped backup. Same inputs twice: no byte changes.
 */
import { parse as parseYaml } from "yaml";
import { ExitCode, InstallError, preflightError } from "../errors.ts";
import { BACKEND_ENV, overridePath, ROOT_ENV } from "../layout.ts";
import type { ReleaseManifest } from "../bundle/release.ts";
import { type EnvChange, parseEnv, redact, renderEnv, setEnvKeys } from "./dotenv.ts";
import { writeFileAtomic } from "./atomic.ts";
import { composeVariables } from "./compose.ts";
import {
  BACKEND_ENV_FILE,
  OVERRIDE_HEADER,
  type OverrideService,
  renderOverride,
} from "./override.ts";

export interface SettingsInput {
  /** The Cortex checkout (holds backend/). */
  cortexDir: string;
  network: "offline" | "online";
  release: ReleaseManifest;
  /** Refs shipped in the bundle by release role; a role with an envKey sets that key. */
  shippedImages: { role: string; ref: string }[];
  /** Host paths substituted for {modelsDir} / {hfCacheDir} in release.env.paths. */
  modelsDir: string;
  hfCacheDir: string;
  /** The compose file that will be run; the root .env and the override go beside it. */
  composeFile: string;
  /** The image each started service runs (e.g. from planImages' needs), pinned by the override. */
  services: Record<string, { image?: string }>;
  /** The service that reads backend/.env (default "gateway"). */
  gatewayService?: string;
  /** Compose v2 `pull_policy` for pinned services (Compose v1 ignores it). */
  pullPolicy?: OverrideService["pullPolicy"];
  /** Header of the override file (default OVERRIDE_HEADER). */
  overrideHeader?: string;
}

/** A key change shown to people: secret values are already "***". */
export type KeyChange = EnvChange;

export interface PlannedFile {
  kind: "backend-env" | "root-env" | "override";
  path: string;
  mode: number;
  /** Current content, or undefined when the file does not exist. */
  before?: string;
  after: string;
  changed: boolean;
  keys: KeyChange[];
}

export interface SettingsPlan {
  files: PlannedFile[];
  /** Keys written to backend/.env (values of secret keys are not redacted here: never print). */
  backendKeys: Record<string, string>;
  /** The subset also written to the root .env because the compose file interpolates them. */
  rootKeys: string[];
}

export interface SettingsFileResult {
  path: string;
  changed: boolean;
  backup?: string;
  keys: KeyChange[];
}

export interface SettingsResult {
  files: SettingsFileResult[];
}

function dirOf(path: string): string {
  const i = path.lastIndexOf("/");
  return i < 0 ? "." : i === 0 ? "/" : path.slice(0, i);
}

async function readText(path: string): Promise<string | undefined> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw preflightError("settings", `Cannot read "${path}": ${(e as Error).message}`);
  }
}

/**
 * The backend/.env keys for a release (pure): the network's keys, each shipped engine image's
 * envKey (the first shipped ref of that role), and the path keys with {modelsDir}/{hfCacheDir}.
 */
export function settingsKeys(
  i: Pick<SettingsInput, "network" | "release" | "shippedImages" | "modelsDir" | "hfCacheDir">,
): Record<string, string> {
  const keys: Record<string, string> = { ...i.release.env[i.network] };
  for (const img of i.release.images) {
    if (!img.envKey) continue;
    const shipped = i.shippedImages.find((s) => s.role === img.role);
    if (shipped) keys[img.envKey] = shipped.ref;
  }
  for (const [k, v] of Object.entries(i.release.env.paths)) {
    keys[k] = v.replaceAll("{modelsDir}", i.modelsDir).replaceAll("{hfCacheDir}", i.hfCacheDir);
  }
  return keys;
}

const redactChanges = (c: EnvChange[]): KeyChange[] =>
  c.map((x) => {
    const r: KeyChange = { key: x.key, new: redact(x.key, x.new) };
    if (x.old !== undefined) r.old = redact(x.key, x.old);
    return r;
  });

/** Per-service `image` / `env_file` changes between two override texts, for the report. */
export function overrideChanges(before: string | undefined, after: string): KeyChange[] {
  const flat = (text: string | undefined): Record<string, string> => {
    const out: Record<string, string> = {};
    let doc: unknown;
    try {
      doc = text ? parseYaml(text) : undefined;
    } catch {
      return out;
    }
    const svcs = (doc as { services?: Record<string, Record<string, unknown>> })?.services ?? {};
    for (const [name, s] of Object.entries(svcs)) {
      for (const [k, v] of Object.entries(s ?? {})) {
        out[`services.${name}.${k}`] = Array.isArray(v)
          ? v.join(",")
          : v && typeof v === "object"
          ? Object.keys(v).sort().join(",")
          : String(v);
      }
    }
    return out;
  };
  const a = flat(before);
  const b = flat(after);
  const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
  const out: KeyChange[] = [];
  for (const k of keys) {
    if (a[k] === b[k]) continue;
    const c: KeyChange = { key: k, new: b[k] ?? "" };
    if (a[k] !== undefined) c.old = a[k];
    out.push(c);
  }
  return out;
}

/**
 * Reads backend/.env, the root .env, the compose file and the current override, and computes
 * their new contents. Writes nothing. Throws a preflight InstallError when the compose file
 * cannot be read or has no gateway service.
 */
export async function planSettings(input: SettingsInput): Promise<SettingsPlan> {
  const gateway = input.gatewayService ?? "gateway";
  const composeText = await readText(input.composeFile);
  if (composeText === undefined) {
    throw preflightError(
      "settings",
      `Cannot read compose file "${input.composeFile}": it does not exist`,
      "Pass the Cortex checkout with --cortex-dir.",
    );
  }
  let serviceNames: string[];
  try {
    const doc = parseYaml(composeText) as { services?: Record<string, unknown> } | null;
    serviceNames = Object.keys(doc?.services ?? {});
  } catch (e) {
    throw preflightError(
      "settings",
      `Cannot read compose file "${input.composeFile}": ${(e as Error).message}`,
    );
  }
  if (!serviceNames.includes(gateway)) {
    throw preflightError(
      "settings",
      `Cannot make backend/.env effective: compose file "${input.composeFile}" has no service "${gateway}"`,
      "Use Cortex's docker.compose.dev.yaml or docker.compose.prod.yaml.",
    );
  }

  const backendKeys = settingsKeys(input);
  const files: PlannedFile[] = [];

  const backendPath = `${input.cortexDir.replace(/\/+$/, "")}/${BACKEND_ENV}`;
  const backendBefore = await readText(backendPath);
  const b = setEnvKeys(parseEnv(backendBefore ?? ""), backendKeys);
  const backendAfter = renderEnv(b.doc);
  files.push({
    kind: "backend-env",
    path: backendPath,
    mode: 0o600,
    before: backendBefore,
    after: backendAfter,
    changed: backendAfter !== backendBefore,
    keys: redactChanges(b.changed),
  });

  const used = new Set(composeVariables(composeText));
  const rootKeys = Object.keys(backendKeys).filter((k) => used.has(k));
  const composeDir = dirOf(input.composeFile);
  if (rootKeys.length > 0) {
    const rootPath = `${composeDir}/${ROOT_ENV}`;
    const rootBefore = await readText(rootPath);
    const r = setEnvKeys(
      parseEnv(rootBefore ?? ""),
      Object.fromEntries(rootKeys.map((k) => [k, backendKeys[k]])),
    );
    const rootAfter = renderEnv(r.doc);
    files.push({
      kind: "root-env",
      path: rootPath,
      mode: 0o600,
      before: rootBefore,
      after: rootAfter,
      changed: rootAfter !== rootBefore,
      keys: redactChanges(r.changed),
    });
  }

  // Only services of the base file: an override that names a new service would define one.
  const services: Record<string, OverrideService> = {};
  for (const [name, s] of Object.entries(input.services)) {
    if (!serviceNames.includes(name) || !s.image) continue;
    services[name] = {
      image: s.image,
      ...(input.pullPolicy ? { pullPolicy: input.pullPolicy } : {}),
    };
  }
  services[gateway] = { ...services[gateway], envFiles: [BACKEND_ENV_FILE] };
  const override = overridePath(input.composeFile);
  const overrideBefore = await readText(override);
  const overrideAfter = renderOverride({ services }, input.overrideHeader ?? OVERRIDE_HEADER);
  files.push({
    kind: "override",
    path: override,
    mode: 0o644,
    before: overrideBefore,
    after: overrideAfter,
    changed: overrideAfter !== overrideBefore,
    keys: overrideChanges(overrideBefore, overrideAfter),
  });

  return { files, backendKeys, rootKeys };
}

/**
 * Writes the planned files that changed (atomically, with a timestamped backup of the previous
 * content). Refuses, before writing anything, when a file changed on disk since the plan.
 */
export async function applySettings(
  plan: SettingsPlan,
  opts: { now?: Date } = {},
): Promise<SettingsResult> {
  for (const f of plan.files) {
    const now = await readText(f.path);
    if (now !== f.before) {
      throw new InstallError(
        "settings",
        `Cannot write "${f.path}": it changed while the installer was running`,
        ExitCode.Preflight,
        "Re-run the install; it re-reads the file and keeps your edits.",
      );
    }
  }
  const files: SettingsFileResult[] = [];
  for (const f of plan.files) {
    const w = f.changed
      ? await writeFileAtomic(f.path, f.after, { mode: f.mode, backup: true, now: opts.now })
      : { changed: false };
    const r: SettingsFileResult = { path: f.path, changed: w.changed, keys: f.keys };
    if (w.backup) r.backup = w.backup;
    files.push(r);
  }
  return { files };
}
