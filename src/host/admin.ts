/**
 * The first admin of Cortex 0.2 and the production rules of its `prod-check.sh`
 * (cortex-0.2-facts §3). The gateway creates the admin at startup from ADMIN_BOOTSTRAP_USERNAME /
 * _PASSWORD while no admin exists; the prod compose refuses to render without the password. The
 * inputs are `--admin-user NAME`, `--admin-password-file FILE` (never a password on the command
 * line: `ps` shows it) or ADMIN_BOOTSTRAP_PASSWORD in the environment; a TTY prompt comes later.
 * Pure, except `readPasswordFile`. No function here returns a password inside a message.
 */
import { UsageError } from "../errors.ts";
import { shellQuote } from "./env02.ts";

export const ADMIN_USER_KEY = "ADMIN_BOOTSTRAP_USERNAME";
export const ADMIN_PASSWORD_KEY = "ADMIN_BOOTSTRAP_PASSWORD";
export const CORS_KEY = "CORS_ALLOW_ORIGINS";
/** The prod compose's default user (`${ADMIN_BOOTSTRAP_USERNAME:-admin}`). */
export const DEFAULT_ADMIN_USER = "admin";

/** prod-check.sh's minimum lengths; ensure-env.sh's for a dev password. */
export const MIN_LENGTH = {
  INTERNAL_VLLM_API_KEY: 16,
  SESSION_SECRET: 32,
  ADMIN_BOOTSTRAP_PASSWORD: 12,
  devPassword: 8,
} as const;

/** Passwords prod-check-like rules refuse whatever their length (case-insensitive). */
const KNOWN_DEFAULTS = new Set(["admin", "password", "changeme", "cortex", "admin123"]);

/**
 * Reads `--admin-password-file FILE`: its content without one trailing newline (`\n` or
 * `\r\n`). An unreadable file is a usage error (exit 2) that does not echo the path (it may be
 * the password pasted in its place); an empty or multi-line one is one naming the file.
 * `mode` warns when group or others can read it (the warning names the file only).
 */
export async function readPasswordFile(
  path: string,
): Promise<{ password: string; warning?: string }> {
  let text: string;
  let mode: number | null = null;
  try {
    text = await Deno.readTextFile(path);
    mode = (await Deno.stat(path)).mode;
  } catch (e) {
    // The path is not echoed: a file that cannot be read may be a password pasted in its place.
    // (Deno's own messages hold the path too: only the error's kind is said.)
    throw new UsageError(
      `Cannot read the admin password file (--admin-password-file): ${
        e instanceof Deno.errors.NotFound
          ? "no such file"
          : e instanceof Deno.errors.PermissionDenied
          ? "permission denied"
          : e instanceof Deno.errors.IsADirectory
          ? "it is a directory"
          : (e as Error).name
      }`,
      "Pass --admin-password-file with a file that holds the password on one line.",
    );
  }
  const password = text.replace(/\r?\n$/, "");
  if (password === "" || /[\r\n]/.test(password)) {
    throw new UsageError(
      `Cannot use the admin password file "${path}": it must hold one line, the password`,
      "Write the password alone on the first line (e.g. `printf '%s\\n' \"$PW\" > FILE`).",
    );
  }
  const warning = mode !== null && (mode & 0o077) !== 0
    ? `The admin password file "${path}" can be read by other users (mode ${
      (mode & 0o777).toString(8)
    }); chmod 600 it`
    : undefined;
  return { password, ...(warning ? { warning } : {}) };
}

export interface AdminInputs {
  /** `--admin-user NAME`. */
  user?: string;
  /** The content of `--admin-password-file` (see readPasswordFile). */
  passwordFromFile?: string;
  /** What was typed at the install's hidden prompt (a TTY without any other source). */
  passwordFromPrompt?: string;
  /** The process environment. */
  env: (key: string) => string | undefined;
  /** The root .env as it is now. */
  current: Readonly<Record<string, string>>;
}

export type AdminSource = "flag" | "file" | "prompt" | "environment" | ".env" | "default";

export interface AdminPlan {
  user: string;
  userSource: AdminSource;
  /** NEVER print it. Undefined: none given (a TTY prompt, or exit 2, decides). */
  password?: string;
  passwordSource?: AdminSource;
  /** What people see: "(set)", "(from --admin-password-file)", ... */
  shownPassword: string;
}

/**
 * Chooses the first admin's name and password (pure). Name: `--admin-user`, else
 * ADMIN_BOOTSTRAP_USERNAME from the environment, else the root .env's, else "admin". Password:
 * `--admin-password-file`, else what was typed at the prompt, else ADMIN_BOOTSTRAP_PASSWORD from
 * the environment, else the root .env's (a re-run keeps it). A bad name is a usage error (exit 2).
 */
export function planAdmin(i: AdminInputs): AdminPlan {
  const nonBlank = (v: string | undefined) => (v !== undefined && v.trim() !== "" ? v : undefined);
  let user: string;
  let userSource: AdminSource;
  const envUser = nonBlank(i.env(ADMIN_USER_KEY));
  const curUser = nonBlank(i.current[ADMIN_USER_KEY]);
  if (i.user !== undefined) [user, userSource] = [i.user, "flag"];
  else if (envUser) [user, userSource] = [envUser, "environment"];
  else if (curUser) [user, userSource] = [curUser, ".env"];
  else [user, userSource] = [DEFAULT_ADMIN_USER, "default"];
  if (!/^[^\s'"`$\\]{1,64}$/.test(user)) {
    throw new UsageError(
      `Cannot use "${user}" as the first admin's name: 1 to 64 characters, no spaces, quotes, $ or \\`,
      "Pass another --admin-user NAME.",
    );
  }
  const envPw = nonBlank(i.env(ADMIN_PASSWORD_KEY));
  const curPw = nonBlank(i.current[ADMIN_PASSWORD_KEY]);
  const pw: [string, AdminSource, string] | undefined = i.passwordFromFile !== undefined
    ? [i.passwordFromFile, "file", "(from --admin-password-file)"]
    : i.passwordFromPrompt !== undefined
    ? [i.passwordFromPrompt, "prompt", "(entered at the prompt)"]
    : envPw
    ? [envPw, "environment", `(from ${ADMIN_PASSWORD_KEY} in the environment)`]
    : curPw
    ? [curPw, ".env", "(set)"]
    : undefined;
  return {
    user,
    userSource,
    ...(pw ? { password: pw[0], passwordSource: pw[1] } : {}),
    shownPassword: pw ? pw[2] : "(not given)",
  };
}

/**
 * The usage error (exit 2) for a run that needs the admin password, has none and cannot ask.
 * Names the flag and the variable.
 */
export function noPasswordError(): UsageError {
  return new UsageError(
    "No password for Cortex's first admin: the production compose file needs ADMIN_BOOTSTRAP_PASSWORD",
    "Pass --admin-password-file FILE (one line, the password) or set ADMIN_BOOTSTRAP_PASSWORD in " +
      "the environment; on a terminal, cortex-install asks for it.",
  );
}

/**
 * What is wrong with a first-admin password (pure; the password never appears): production
 * (prod-check.sh) wants >= 12 characters, dev (ensure-env.sh) >= 8; never a known default or the
 * user's own name; no control characters; and a value the root .env can hold for bash and compose.
 */
export function passwordProblems(password: string, user: string, production: boolean): string[] {
  const out: string[] = [];
  const min = production ? MIN_LENGTH.ADMIN_BOOTSTRAP_PASSWORD : MIN_LENGTH.devPassword;
  if ([...password].length < min) {
    out.push(
      `the first admin's password has ${[...password].length} characters; ${
        production ? "production (prod-check.sh)" : "Cortex"
      } needs at least ${min}`,
    );
  }
  if (KNOWN_DEFAULTS.has(password.toLowerCase()) || password.toLowerCase() === user.toLowerCase()) {
    out.push("the first admin's password is a well-known default or the user's own name");
  }
  const q = shellQuote(password);
  if ("error" in q) out.push(`the first admin's password cannot be written to .env: ${q.error}`);
  return out;
}

// ---------------------------------------------------------------------------------------------
// CORS

/**
 * Parses CORS_ALLOW_ORIGINS / `--cors-origin`: comma-separated origins, each `http(s)://host`
 * with an optional port and nothing after it (a browser's Origin header has no path). `*` and
 * an empty list are refused (prod-check.sh). Returns the normalized list or why not.
 */
export function parseCorsOrigins(value: string): { origins: string[] } | { error: string } {
  const items = value.split(",").map((s) => s.trim()).filter((s) => s !== "");
  if (items.length === 0) return { error: "no origin given" };
  const origins: string[] = [];
  for (const item of items) {
    if (item === "*") return { error: '"*" allows every site; name the UI\'s origin' };
    let u: URL;
    try {
      u = new URL(item);
    } catch {
      return { error: `"${item}" is not a URL like https://cortex.example.com` };
    }
    if (u.protocol !== "http:" && u.protocol !== "https:") {
      return { error: `"${item}" is not http:// or https://` };
    }
    if (
      u.username || u.password || u.search || u.hash || (u.pathname !== "/" && u.pathname !== "")
    ) {
      return { error: `"${item}" has more than scheme://host[:port]` };
    }
    if (!/^[a-z][a-z0-9+.-]*:\/\/[^/]+\/?$/i.test(item)) {
      return { error: `"${item}" has more than scheme://host[:port]` };
    }
    origins.push(u.origin);
  }
  return { origins };
}

/** Where the UI can be reached, as the default origin needs it. */
export interface OriginFacts {
  /** HOST_IP from the root .env or the environment (Cortex's LAN address). */
  hostIp?: string;
  /** FRONTEND_BIND (prod: 127.0.0.1 by default). */
  frontendBind?: string;
  /** FRONTEND_PORT (default 3001). */
  frontendPort?: string;
  /** This machine's host name, for a UI bound on every address. */
  hostname?: string;
}

const LOOPBACK = new Set(["127.0.0.1", "localhost", "::1"]);
const ANY = new Set(["0.0.0.0", "::", ""]);

/**
 * The default UI origin (pure): `http://<host>:<FRONTEND_PORT or 3001>`, the host being HOST_IP
 * when set; else the address FRONTEND_BIND names (prod binds 127.0.0.1 by default: then
 * `localhost`, where browsers also accept Secure cookies); else, bound on every address, the
 * machine's host name.
 */
export function defaultCorsOrigin(f: OriginFacts): string {
  const port = f.frontendPort && /^\d{1,5}$/.test(f.frontendPort) ? f.frontendPort : "3001";
  const bind = f.frontendBind?.trim() ?? "127.0.0.1";
  let host: string;
  if (f.hostIp?.trim()) host = f.hostIp.trim();
  else if (LOOPBACK.has(bind)) host = "localhost";
  else if (ANY.has(bind)) host = f.hostname?.trim() || "localhost";
  else host = bind;
  if (host.includes(":") && !host.startsWith("[")) host = `[${host}]`;
  return `http://${host}:${port}`;
}

// ---------------------------------------------------------------------------------------------
// prod-check.sh

export interface RuleProblem {
  key: string;
  level: "error" | "warning";
  /** Never holds the value of a secret. */
  message: string;
  hint?: string;
}

/**
 * The rules of Cortex's `prod-check.sh` on the settings compose will see (pure). Errors:
 * INTERNAL_VLLM_API_KEY < 16 characters, SESSION_SECRET < 32, ADMIN_BOOTSTRAP_PASSWORD < 12 (or
 * a known default), CORS_ALLOW_ORIGINS unset or `*`, an `*_IMAGE` at `:latest` or untagged.
 * Warnings: POSTGRES_PASSWORD left at "cortex"; SESSION_COOKIE_SECURE true (the prod default)
 * with an http:// origin other than localhost (the browser will not send the cookie).
 */
export function prodCheck(values: Readonly<Record<string, string>>): RuleProblem[] {
  const out: RuleProblem[] = [];
  const len = (k: string) => [...(values[k] ?? "")].length;
  for (const k of ["INTERNAL_VLLM_API_KEY", "SESSION_SECRET"] as const) {
    if (len(k) < MIN_LENGTH[k]) {
      out.push({
        key: k,
        level: "error",
        message: `${k} has ${len(k)} characters; production needs at least ${MIN_LENGTH[k]}`,
        hint: k === "INTERNAL_VLLM_API_KEY"
          ? "Set a longer one in the root .env (openssl rand -hex 32). Running model containers " +
            "keep the old key: restart them after changing it."
          : "Set a longer one in the root .env (openssl rand -hex 32); everyone logs in again.",
      });
    }
  }
  const pw = values[ADMIN_PASSWORD_KEY] ?? "";
  for (const p of passwordProblems(pw, values[ADMIN_USER_KEY] ?? DEFAULT_ADMIN_USER, true)) {
    out.push({
      key: ADMIN_PASSWORD_KEY,
      level: "error",
      message: p,
      hint: "Pass --admin-password-file FILE with a longer password.",
    });
  }
  const cors = values[CORS_KEY];
  const parsed = cors === undefined ? { error: "it is not set" } : parseCorsOrigins(cors);
  if ("error" in parsed) {
    out.push({
      key: CORS_KEY,
      level: "error",
      message: `${CORS_KEY} is not usable in production: ${parsed.error}`,
      hint:
        "Pass --cors-origin URL: the origin the browser opens, e.g. https://cortex.example.com.",
    });
  } else {
    const secure = (values.SESSION_COOKIE_SECURE ?? "true").toLowerCase() !== "false";
    const plainHttp = parsed.origins.filter((o) =>
      o.startsWith("http://") && !/^http:\/\/(localhost|127\.0\.0\.1|\[::1\])(:|$)/.test(o)
    );
    if (secure && plainHttp.length > 0) {
      out.push({
        key: "SESSION_COOKIE_SECURE",
        level: "warning",
        message: `SESSION_COOKIE_SECURE is true but the UI origin ${plainHttp[0]} is plain http: ` +
          "browsers will not send the session cookie",
        hint:
          "Serve the UI over https (a TLS proxy), or set SESSION_COOKIE_SECURE=false in the root .env.",
      });
    }
  }
  if ((values.POSTGRES_PASSWORD ?? "cortex") === "cortex") {
    out.push({
      key: "POSTGRES_PASSWORD",
      level: "warning",
      message: "POSTGRES_PASSWORD is Cortex's default (Postgres listens on loopback only)",
    });
  }
  for (const [k, v] of Object.entries(values)) {
    if (!/_IMAGE$/.test(k) || v === "") continue;
    const slash = v.lastIndexOf("/");
    const colon = v.lastIndexOf(":");
    const tag = v.includes("@") ? "digest" : colon > slash ? v.slice(colon + 1) : "";
    if (tag === "" || tag === "latest") {
      out.push({
        key: k,
        level: "error",
        message: `${k} is "${v}": production needs a pinned tag, not ${
          tag === "" ? "none" : ":latest"
        }`,
        hint: "Set the tag the bundle ships (versions.env names it).",
      });
    }
  }
  return out;
}
