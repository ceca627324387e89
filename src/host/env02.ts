/**
 * Cortex 0.2's root `.env`: the only settings file its compose files read (cortex-0.2-facts §3).
 * Pure planning: which keys go there, how values are quoted so that the file stays valid for
 * `bash .` (Cortex's `make verify-offline` sources it) and for docker compose, which keys compose
 * refuses to render without (`${KEY:?...}`), and which keys need the override file's
 * `environment:` because no `environment:` entry of the gateway carries them. Every other byte
 * of the file is kept (src/install/dotenv.ts); nothing here writes.
 */
import { parse as parseYaml } from "yaml";
import {
  ENV_KEY_RE,
  type EnvChange,
  type EnvDoc,
  envRecord,
  parseEnv,
  redact,
  renderEnv,
  setEnvKeys,
} from "./dotenv.ts";
import { preflightError } from "../errors.ts";

/** Characters a bare value may hold and still read back the same in bash and compose. */
const BARE_RE = /^[A-Za-z0-9_.,:/@%+=-]*$/;

/**
 * Quotes a value for a `.env` that both `bash .` and docker compose read back unchanged: bare
 * when it holds only safe characters, else in single quotes (literal in both, like Cortex's
 * ensure-env.sh), else — for a value holding `'` — in double quotes when it holds none of
 * `$ \` " \\` (which both would interpret). Returns an error (never the value) otherwise, and
 * for newlines or other control characters.
 */
export function shellQuote(value: string): { text: string } | { error: string } {
  // deno-lint-ignore no-control-regex
  if (/[\x00-\x1f\x7f]/.test(value)) return { error: "it holds a newline or a control character" };
  if (BARE_RE.test(value)) return { text: value };
  if (!value.includes("'")) return { text: `'${value}'` };
  if (!/[$`"\\]/.test(value)) return { text: `"${value}"` };
  return {
    error: 'it holds a single quote together with one of $ ` " \\, which no quoting keeps ' +
      "readable by both bash and docker compose",
  };
}

/** A key change for people: secret values are "***". */
export type KeyChange = EnvChange;

export interface RootEnvInput {
  /** The current root .env, or undefined when there is none. */
  current?: string;
  /** `.env.example` of the checkout: a new .env starts from it (as Cortex's ensure-env.sh does). */
  example?: string;
  /** Keys to set, values as programs read them (secrets included; never printed). */
  keys: Record<string, string>;
}

export interface RootEnvPlan {
  before?: string;
  after: string;
  /** True when there was no .env (it is made from .env.example when there is one). */
  created: boolean;
  changed: boolean;
  /** What changes, secret values shown as "***". */
  changes: KeyChange[];
  /** 0600: the file holds secrets (Cortex's ensure-env.sh chmods it too). */
  mode: number;
}

/**
 * Computes the new root .env (pure): from the current file (or `.env.example`, or nothing), each
 * key is set in place; a key present only as a commented `#KEY=` line takes that line (Cortex
 * rewrites "the first KEY= or #KEY= line"); any other is appended once under cortex-install's
 * header. Values are quoted with `shellQuote`. Throws a preflight error naming the key (not its
 * value) when a value cannot be written. Same inputs twice: the same bytes.
 */
export function planRootEnv(input: RootEnvInput): RootEnvPlan {
  const quoted: Record<string, string> = Object.create(null);
  for (const [k, v] of Object.entries(input.keys)) {
    if (!ENV_KEY_RE.test(k)) {
      throw preflightError(
        "settings",
        `Cannot set ${JSON.stringify(k)} in the root .env: not a variable name`,
        "Use letters, digits and _ only, not starting with a digit.",
      );
    }
    const q = shellQuote(v);
    if ("error" in q) {
      throw preflightError(
        "settings",
        `Cannot write ${k} to the root .env: ${q.error}`,
        `Choose a value for ${k} without it.`,
      );
    }
    quoted[k] = q.text;
  }
  const created = input.current === undefined;
  const base = input.current ?? input.example ?? "";
  let doc: EnvDoc = parseEnv(base);
  const have = envRecord(doc);
  const uncommented: EnvChange[] = [];
  const lines = doc.lines.map((l) => ({ ...l }));
  for (const key of Object.keys(input.keys)) {
    if (Object.hasOwn(have, key)) continue;
    const i = lines.findIndex((l) => new RegExp(`^\\s*#\\s*${key}\\s*=`).test(l.raw));
    if (i < 0) continue;
    lines[i] = { ...lines[i], raw: `${key}=${quoted[key]}` };
    uncommented.push({ key, new: input.keys[key] });
  }
  if (uncommented.length > 0) doc = parseEnv(renderEnv({ lines, newline: doc.newline }));
  // Every value was checked above, so quoting by value cannot fail here.
  const r = setEnvKeys(doc, input.keys, {
    quote: (v) => {
      const q = shellQuote(v);
      return "text" in q ? q.text : v;
    },
  });
  const after = renderEnv(r.doc);
  const changes = [...uncommented, ...r.changed].map((c) => {
    const x: KeyChange = { key: c.key, new: redact(c.key, c.new) };
    if (c.old !== undefined) x.old = redact(c.key, c.old);
    return x;
  });
  return {
    ...(input.current !== undefined ? { before: input.current } : {}),
    after,
    created,
    changed: after !== input.current,
    changes,
    mode: 0o600,
  };
}

/**
 * The keys a compose file refuses to render without: every `${KEY:?msg}` and `${KEY?msg}`
 * (pure; `$${...}` is an escaped dollar and does not count). Sorted.
 */
export function requiredComposeKeys(composeText: string): string[] {
  const out = new Set<string>();
  const re = /(\$*)\$\{([A-Za-z_][A-Za-z0-9_]*)(:?\?)/g;
  // Compose interpolates values only: a `${KEY:?}` in a comment requires nothing.
  for (const text of yamlStrings(composeText)) {
    for (let m = re.exec(text); m; m = re.exec(text)) {
      if (m[1].length % 2 === 1) continue;
      out.add(m[2]);
    }
  }
  return [...out].sort();
}

/** Every string value of a YAML text (the text itself when it does not parse). */
function yamlStrings(text: string): string[] {
  let doc: unknown;
  try {
    doc = parseYaml(text, { merge: true });
  } catch {
    return [text];
  }
  const out: string[] = [];
  const walk = (v: unknown) => {
    if (typeof v === "string") out.push(v);
    else if (Array.isArray(v)) v.forEach(walk);
    else if (v && typeof v === "object") Object.values(v).forEach(walk);
  };
  walk(doc);
  return out;
}

/**
 * Required keys that `lookup` leaves unset (`${KEY?}`) or empty (`${KEY:?}` refuses empty too;
 * Cortex uses `:?` only). Pure.
 */
export function missingRequiredKeys(
  required: readonly string[],
  lookup: (key: string) => string | undefined,
): string[] {
  return required.filter((k) => (lookup(k) ?? "") === "");
}

/** The keys a service's `environment:` carries (map or `KEY=value` list), from compose text. */
export function serviceEnvironmentKeys(composeText: string, service: string): Set<string> {
  let doc: unknown;
  try {
    doc = parseYaml(composeText, { merge: true });
  } catch (e) {
    throw preflightError("settings", `Cannot read the compose file: ${(e as Error).message}`);
  }
  const svc = (doc as { services?: Record<string, { environment?: unknown }> } | null)
    ?.services?.[service];
  const env = svc?.environment;
  const keys = new Set<string>();
  if (Array.isArray(env)) {
    for (const e of env) if (typeof e === "string") keys.add(e.split("=")[0].trim());
  } else if (env && typeof env === "object") {
    for (const k of Object.keys(env)) keys.add(k);
  }
  return keys;
}

/**
 * The override's `environment:` for the gateway (pure): each of `containerKeys` (settings the
 * gateway itself must see, e.g. OFFLINE_MODE_AUTO_DETECT) that no `environment:` entry of the
 * service carries becomes `KEY: ${KEY}`, read from the root .env like every other setting. Keys
 * an entry already carries need nothing: the root .env reaches them through interpolation, and
 * an `env_file` would lose to the entry anyway (cortex-0.2-facts §3).
 */
export function overrideEnvironment(
  composeText: string,
  service: string,
  containerKeys: readonly string[],
): Record<string, string> {
  const carried = serviceEnvironmentKeys(composeText, service);
  const out: Record<string, string> = {};
  for (const k of containerKeys) if (!carried.has(k)) out[k] = `\${${k}}`;
  return out;
}
