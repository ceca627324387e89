/**
 * The settings plan for Cortex 0.2 (pure): what goes into the root `.env` (the only settings file
 * 0.2's compose reads; no backend/.env), which keys the override's `environment:` adds for the
 * gateway, the generated secrets, the first admin, CORS, and what prod-check.sh would refuse.
 * It reads nothing and writes nothing: the install step (phase 2) reads the files, calls
 * `planSettings02`, shows `settings02Lines`, reports `settings02Report`, and writes
 * `rootEnv.after` atomically (mode 0600) and the override.
 *
 * Secrets: values live only in `rootEnv.after` (the file's new content) and in `SecretPlan.value`
 * for the writer. Lines and reports show "(generated)", "(set)", "(from ...)".
 */
import type { ReleaseManifest } from "../bundle/release.ts";
import { refusedComposeFile } from "../bundle/release.ts";
import { preflightError, UsageError } from "../errors.ts";
import { envRecord, parseEnv } from "./dotenv.ts";
import { settingsKeys } from "./settings.ts";
import {
  ADMIN_PASSWORD_KEY,
  ADMIN_USER_KEY,
  type AdminPlan,
  CORS_KEY,
  defaultCorsOrigin,
  parseCorsOrigins,
  passwordProblems,
  planAdmin,
  prodCheck,
  type RuleProblem,
} from "./admin.ts";
import {
  missingRequiredKeys,
  overrideEnvironment,
  planRootEnv,
  requiredComposeKeys,
  type RootEnvPlan,
} from "./env02.ts";
import { planSecrets, type SecretPlan } from "./secrets.ts";

export interface Settings02Input {
  /** The 0.2 line's policy (`settings.mode` "root-env"). */
  policy: ReleaseManifest;
  /** The compose file that will run (its base name picks the required keys and refusals). */
  composeFile: string;
  composeText: string;
  /** The root .env now (undefined: none). */
  rootEnv?: string;
  /** The checkout's .env.example (a new .env starts from it). */
  example?: string;
  network: "offline" | "online";
  modelsDir: string;
  hfCacheDir: string;
  /** Shipped refs by policy role (the engine chosen for this GPU for "vllm"). */
  shippedImages: { role: string; ref: string }[];
  /** The process environment (compose reads it before the root .env). */
  env: (key: string) => string | undefined;
  /** `--admin-user`, the content of `--admin-password-file`, what was typed at the prompt. */
  admin: { user?: string; passwordFromFile?: string; passwordFromPrompt?: string };
  /** `--cors-origin`. */
  corsOrigin?: string;
  /** This machine's host name (for a UI bound on every address). */
  hostname?: string;
  /** The secret generator (default: 64 hex from the CSPRNG). */
  generate?: () => string;
  /** The service that is the gateway (default "gateway"). */
  gatewayService?: string;
  /**
   * Settings carried from Cortex 0.1's backend/.env (upgrade01.ts): taken as the root .env's
   * where it leaves them blank, and written there.
   */
  carried?: Record<string, string>;
}

export type CorsSource = "flag" | "environment" | ".env" | "default";

export interface Settings02Plan {
  rootEnv: RootEnvPlan;
  /** The gateway's override `environment:` (`KEY: ${KEY}`), for keys no entry carries. */
  overrideEnvironment: Record<string, string>;
  secrets: SecretPlan[];
  admin: AdminPlan;
  /** The UI origin(s) (production only: the dev compose computes its own). */
  cors?: { value: string; source: CorsSource };
  /** True for the production compose file (prod-check.sh's rules apply). */
  production: boolean;
  /** The compose file's `:?` keys (and the policy's for its name). */
  required: string[];
  /** Required keys still unset after the plan (compose would refuse to render). */
  missingRequired: string[];
  /** prod-check.sh's errors and warnings on the planned values (no secret values inside). */
  problems: RuleProblem[];
  /** No admin password from any input: a TTY prompt asks, else exit 2 (`noPasswordError`). */
  needsAdminPassword: boolean;
  warnings: string[];
}

/**
 * Plans Cortex 0.2's settings (pure but for the secret generator). Throws a preflight error
 * (exit 3) when the policy refuses the compose file (0.2's dev file), and a usage error (exit 2)
 * for a bad `--cors-origin` or `--admin-user`.
 */
export function planSettings02(i: Settings02Input): Settings02Plan {
  const refused = refusedComposeFile(i.policy, i.composeFile);
  if (refused) {
    throw preflightError(
      "preflight",
      `Cannot run "${i.composeFile}" with a Cortex ${i.policy.release} bundle: ${refused}`,
      `Run ${
        i.policy.compose.run ?? "the production compose file"
      } (pass --compose-file, or leave it out).`,
    );
  }
  const base = i.composeFile.slice(i.composeFile.lastIndexOf("/") + 1);
  const required = [
    ...new Set([
      ...requiredComposeKeys(i.composeText),
      ...(i.policy.settings.required[base] ?? []),
    ]),
  ].sort();
  const production = required.includes(ADMIN_PASSWORD_KEY) ||
    base === i.policy.compose.run;
  const current0 = envRecord(parseEnv(i.rootEnv ?? i.example ?? ""));
  const carried = Object.fromEntries(
    Object.entries(i.carried ?? {}).filter(([k]) => (current0[k] ?? "").trim() === ""),
  );
  const current = { ...current0, ...carried };
  const warnings: string[] = [];

  const keys: Record<string, string> = settingsKeys({
    network: i.network,
    release: i.policy,
    shippedImages: i.shippedImages,
    modelsDir: i.modelsDir,
    hfCacheDir: i.hfCacheDir,
  });
  // Carried settings the plan does not decide otherwise go to the root .env as they were.
  for (const [k, v] of Object.entries(carried)) keys[k] ??= v;
  const s = planSecrets(i.policy.env.secrets, current, i.env, i.generate);
  warnings.push(...s.warnings);
  for (const x of s.secrets) keys[x.key] = x.value;

  const admin = planAdmin({ ...i.admin, env: i.env, current });
  keys[ADMIN_USER_KEY] = admin.user;
  if (admin.password !== undefined) keys[ADMIN_PASSWORD_KEY] = admin.password;
  if (admin.passwordSource && admin.passwordSource !== ".env" && current[ADMIN_PASSWORD_KEY]) {
    warnings.push(
      `${ADMIN_PASSWORD_KEY} changes in the root .env; Cortex uses it only while no admin exists ` +
        "(an existing admin's password stays as it is: `make setup-admin` changes it)",
    );
  }

  let cors: Settings02Plan["cors"];
  if (production) {
    if (i.corsOrigin !== undefined) {
      const p = parseCorsOrigins(i.corsOrigin);
      if ("error" in p) {
        throw new UsageError(
          `Cannot use --cors-origin "${i.corsOrigin}": ${p.error}`,
          "Pass the origin the browser opens, e.g. --cors-origin https://cortex.example.com.",
        );
      }
      cors = { value: p.origins.join(","), source: "flag" };
    } else if (i.env(CORS_KEY)?.trim()) {
      cors = { value: i.env(CORS_KEY)!.trim(), source: "environment" };
    } else if (current[CORS_KEY]?.trim()) {
      cors = { value: current[CORS_KEY].trim(), source: ".env" };
    } else {
      const look = (k: string) => i.env(k) ?? current[k];
      cors = {
        value: defaultCorsOrigin({
          hostIp: look("HOST_IP"),
          frontendBind: look("FRONTEND_BIND"),
          frontendPort: look("FRONTEND_PORT"),
          hostname: i.hostname,
        }),
        source: "default",
      };
    }
    if (cors.source !== "environment") keys[CORS_KEY] = cors.value;
  }

  const rootEnv = planRootEnv({
    ...(i.rootEnv !== undefined ? { current: i.rootEnv } : {}),
    ...(i.example !== undefined ? { example: i.example } : {}),
    keys,
  });
  const after = envRecord(parseEnv(rootEnv.after));
  // Compose reads the shell's environment before the root .env.
  const seen = (k: string) => i.env(k) ?? after[k];
  const containerKeys = [
    ...Object.keys(i.policy.env[i.network]),
    ...i.policy.images.flatMap((x) => (x.envKey ? [x.envKey] : [])),
  ];
  const needsAdminPassword = admin.password === undefined;
  let problems: RuleProblem[];
  if (production) {
    const values: Record<string, string> = {};
    for (const k of new Set([...Object.keys(after), ...required])) {
      const v = seen(k);
      if (v !== undefined) values[k] = v;
    }
    problems = prodCheck(values).filter((p) =>
      !(needsAdminPassword && p.key === ADMIN_PASSWORD_KEY)
    );
  } else {
    problems = admin.password === undefined
      ? []
      : passwordProblems(admin.password, admin.user, false)
        .map((message) => ({ key: ADMIN_PASSWORD_KEY, level: "error" as const, message }));
  }
  return {
    rootEnv,
    overrideEnvironment: overrideEnvironment(
      i.composeText,
      i.gatewayService ?? "gateway",
      containerKeys,
    ),
    secrets: s.secrets,
    admin,
    ...(cors ? { cors } : {}),
    production,
    required,
    missingRequired: missingRequiredKeys(required, seen),
    problems,
    needsAdminPassword,
    warnings,
  };
}

const CORS_SHOWN: Record<CorsSource, string> = {
  flag: "from --cors-origin",
  environment: "from the environment",
  ".env": "kept from .env",
  default: "default: this host and FRONTEND_PORT; --cors-origin URL to change",
};

/** The plan's lines for people (no secret value): secrets as "(generated)", "(set)", ... */
export function settings02Lines(
  plan: Settings02Plan | Settings02Report,
  rootEnvPath?: string,
): string[] {
  const p: Settings02Report = "after" in plan.rootEnv
    ? settings02Report(plan as Settings02Plan)
    : plan as Settings02Report;
  const l: string[] = [];
  l.push(
    `root .env${rootEnvPath ? ` ${rootEnvPath}` : ""}: ${
      p.rootEnv.created ? "created" : p.rootEnv.changed ? "updated" : "unchanged"
    } (mode 0600), ${p.rootEnv.changes.length} key(s) set; no backend/.env (Cortex 0.2 reads only the root .env)`,
  );
  for (const s of p.secrets) l.push(`  ${s.key} ${s.shown}`);
  l.push(`  first admin: ${p.admin.user} (${p.admin.userSource}), password ${p.admin.password}`);
  if (p.cors) l.push(`  ${CORS_KEY}: ${p.cors.value} (${CORS_SHOWN[p.cors.source]})`);
  const ov = p.overrideEnvironment;
  if (ov.length > 0) l.push(`  gateway environment (override file): ${ov.join(", ")}`);
  for (const k of p.missingRequired) {
    l.push(`  missing: ${k} (compose refuses to start without it)`);
  }
  for (const x of p.problems) l.push(`  ${x.level}: ${x.message}`);
  for (const w of p.warnings) l.push(`  warning: ${w}`);
  return l;
}

/** The plan as reports show it (see settings02Report). */
export type Settings02Report = ReturnType<typeof settings02Report>;

/** The plan for a JSON report: everything but the file contents and the secret values. */
export function settings02Report(p: Settings02Plan) {
  return {
    rootEnv: {
      created: p.rootEnv.created,
      changed: p.rootEnv.changed,
      mode: p.rootEnv.mode,
      changes: p.rootEnv.changes,
    },
    overrideEnvironment: Object.keys(p.overrideEnvironment),
    secrets: p.secrets.map((s) => ({ key: s.key, source: s.source, shown: s.shown })),
    admin: {
      user: p.admin.user,
      userSource: p.admin.userSource,
      password: p.admin.shownPassword,
      ...(p.admin.passwordSource ? { passwordSource: p.admin.passwordSource } : {}),
    },
    ...(p.cors ? { cors: p.cors } : {}),
    production: p.production,
    required: p.required,
    missingRequired: p.missingRequired,
    problems: p.problems,
    needsAdminPassword: p.needsAdminPassword,
    warnings: p.warnings,
  };
}
