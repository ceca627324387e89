/**
 * Cortex 0.2's settings as files: reads the root `.env`, `.env.example` and the compose file,
 * plans them with `planSettings02` (settings02.ts), and returns the same `SettingsPlan` the 0.1
 * settings step writes (host/settings.ts `applySettings`: only what changed, atomically, with a
 * backup), holding two files: the root `.env` (mode 0600: it holds the secrets) and the compose
 * override (image pins and the gateway's `environment:` entries; no `env_file`). No backend/.env
 * is written for 0.2: its containers never read one. Reads only.
 */
import { join } from "node:path";
import { preflightError } from "../errors.ts";
import { overridePath, ROOT_ENV } from "../layout.ts";
import { envRecord, parseEnv } from "./dotenv.ts";
import { OVERRIDE_HEADER_02, type OverrideService, renderOverride } from "./override.ts";
import { overrideChanges, type PlannedFile, type SettingsPlan } from "./settings.ts";
import { planSettings02, type Settings02Input, type Settings02Plan } from "./settings02.ts";

/** `.env.example` of a Cortex checkout: a new root .env starts from it (ensure-env.sh). */
export const ENV_EXAMPLE = ".env.example";

export interface Settings02FilesInput extends
  Pick<
    Settings02Input,
    | "policy"
    | "network"
    | "modelsDir"
    | "hfCacheDir"
    | "shippedImages"
    | "env"
    | "admin"
    | "corsOrigin"
    | "hostname"
    | "generate"
    | "carried"
  > {
  cortexDir: string;
  /** The compose file that will run; the root .env and the override go beside it. */
  composeFile: string;
  /** The image each started service runs, pinned by the override. */
  services: Record<string, { image?: string }>;
  gatewayService?: string;
}

export interface Settings02Files {
  /** The files to write (root .env, override), for `applySettings`. */
  settings: SettingsPlan;
  /** What was planned (secrets, admin, CORS, prod-check): shown without any secret value. */
  detail: Settings02Plan;
  /** The compose file's text, as read. */
  composeText: string;
}

async function readText(path: string): Promise<string | undefined> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw preflightError("settings", `Cannot read "${path}": ${(e as Error).message}`);
  }
}

const dirOf = (p: string) => p.slice(0, p.lastIndexOf("/")) || "/";

/**
 * Reads the checkout's files and plans Cortex 0.2's settings (see the module comment). Throws
 * what `planSettings02` throws (a refused compose file, a bad --cors-origin or --admin-user) and
 * a preflight error when the compose file cannot be read or has no gateway service.
 */
export async function planSettingsFiles02(i: Settings02FilesInput): Promise<Settings02Files> {
  const gateway = i.gatewayService ?? "gateway";
  const composeText = await readText(i.composeFile);
  if (composeText === undefined) {
    throw preflightError(
      "settings",
      `Cannot read compose file "${i.composeFile}": it does not exist`,
      "Pass the Cortex checkout with --cortex-dir.",
    );
  }
  const rootPath = join(dirOf(i.composeFile), ROOT_ENV);
  const rootEnv = await readText(rootPath);
  const example = await readText(join(i.cortexDir, ENV_EXAMPLE));
  const detail = planSettings02({
    policy: i.policy,
    composeFile: i.composeFile,
    composeText,
    ...(rootEnv !== undefined ? { rootEnv } : {}),
    ...(example !== undefined ? { example } : {}),
    network: i.network,
    modelsDir: i.modelsDir,
    hfCacheDir: i.hfCacheDir,
    shippedImages: i.shippedImages,
    env: i.env,
    admin: i.admin,
    ...(i.corsOrigin !== undefined ? { corsOrigin: i.corsOrigin } : {}),
    ...(i.hostname !== undefined ? { hostname: i.hostname } : {}),
    ...(i.generate ? { generate: i.generate } : {}),
    ...(i.carried ? { carried: i.carried } : {}),
    gatewayService: gateway,
  });
  const files: PlannedFile[] = [{
    kind: "root-env",
    path: rootPath,
    mode: detail.rootEnv.mode,
    ...(rootEnv !== undefined ? { before: rootEnv } : {}),
    after: detail.rootEnv.after,
    changed: detail.rootEnv.changed,
    keys: detail.rootEnv.changes,
  }];

  const services: Record<string, OverrideService> = {};
  for (const [name, s] of Object.entries(i.services)) {
    if (s.image) services[name] = { image: s.image };
  }
  if (Object.keys(detail.overrideEnvironment).length > 0) {
    services[gateway] = { ...services[gateway], environment: detail.overrideEnvironment };
  }
  const override = overridePath(i.composeFile);
  const overrideBefore = await readText(override);
  const overrideAfter = renderOverride({ services }, OVERRIDE_HEADER_02);
  files.push({
    kind: "override",
    path: override,
    mode: 0o644,
    ...(overrideBefore !== undefined ? { before: overrideBefore } : {}),
    after: overrideAfter,
    changed: overrideAfter !== overrideBefore,
    keys: overrideChanges(overrideBefore, overrideAfter),
  });
  return {
    settings: { files, backendKeys: {}, rootKeys: detail.rootEnv.changes.map((c) => c.key) },
    detail,
    composeText,
  };
}

/** A key lookup over the planned root .env and the environment (compose's order). */
export function settingsLookup(
  f: Settings02Files,
  env: (key: string) => string | undefined,
): (key: string) => string | undefined {
  const after = envRecord(parseEnv(f.settings.files.find((x) => x.kind === "root-env")!.after));
  return (k) => env(k) ?? after[k];
}
