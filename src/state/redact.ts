/**
 * Deciding what is a secret, and hiding secret values in command lines before they are logged or
 * written to the audit log. Pure functions.
 */

/** What every hidden value is replaced with. */
export const REDACTED = "***";

/** A word of a key that names a secret (matched inside the word: `APIKEY`, `HFTOKEN`). */
const SECRET_RE = /(TOKEN|SECRET|PASSWORD|PASSWD|PASS|KEY|CREDENTIAL|PRIVATE)/i;

/**
 * Words that contain a secret-looking part but name a count, a list or a switch, not a secret.
 * In an LLM platform `MAX_TOKENS` and `ALLOW_ALL_KEYS` are settings, not secrets, so the plural
 * words `KEYS` and `TOKENS` (and a few English words) are not secret by themselves. Plural
 * `SECRETS`, `PASSWORDS`, `CREDENTIALS` stay secret: `GOOGLE_CREDENTIALS` holds one.
 */
const NOT_SECRET_WORDS = new Set([
  "KEYS",
  "TOKENS",
  "TOKENIZER",
  "TOKENIZERS",
  "KEYBOARD",
  "KEYWORD",
  "KEYWORDS",
  "PASSTHROUGH",
  "BYPASS",
  "PASSIVE",
  "COMPASS",
  "MONKEY",
]);

/** Splits `INTERNAL_VLLM_API_KEY`, `hf-token`, `apiKey`, `db.password` into words. */
function words(key: string): string[] {
  return key
    .replace(/([a-z0-9])([A-Z])/g, "$1_$2")
    .split(/[^A-Za-z0-9]+/)
    .filter((w) => w !== "")
    .map((w) => w.toUpperCase());
}

/**
 * Whether a setting or flag name holds a secret: one of its words contains TOKEN, SECRET,
 * PASSWORD, PASSWD, PASS, KEY, CREDENTIAL or PRIVATE, and is not a known non-secret word.
 * `INTERNAL_VLLM_API_KEY`, `HF_TOKEN`, `--admin-password`, `apiKey` are secrets;
 * `GATEWAY_DEV_ALLOW_ALL_KEYS`, `VLLM_MAX_NUM_BATCHED_TOKENS`, `TOKENIZER_MODE` are not.
 */
export function isSecretKey(key: string): boolean {
  return words(key).some((w) => !NOT_SECRET_WORDS.has(w) && SECRET_RE.test(w));
}

const ENV_ASSIGN_RE = /^([A-Za-z_][A-Za-z0-9_.-]*)=([\s\S]*)$/;
/** `scheme://user:password@host`: the password part. */
const URL_CREDS_RE = /^([a-z][a-z0-9+.-]*:\/\/[^/:@\s]*:)([^@/\s]+)(@)/i;

/** Redacts a value that may itself be `KEY=VALUE` or a URL with a password. */
function redactValue(value: string): string {
  const m = ENV_ASSIGN_RE.exec(value);
  if (m && isSecretKey(m[1])) return `${m[1]}=${REDACTED}`;
  if (m) return `${m[1]}=${redactValue(m[2])}`;
  return value.replace(URL_CREDS_RE, `$1${REDACTED}$3`);
}

/** What the redaction needs to know of one flag: whether it takes a value, whether it is secret. */
export interface FlagKind {
  takesValue: boolean;
  secret: boolean;
}

/**
 * The kind of a flag the flag table does not know (a typo, a flag of another version): a name
 * that looks secret (`--admin-pasword`, `--hf-token`) is taken to carry a secret value, so a
 * mistyped secret flag is hidden too; `--no-...` switches never are.
 */
export function unknownFlagKind(name: string): FlagKind {
  const secret = !name.startsWith("no-") && isSecretKey(name);
  return { takesValue: secret, secret };
}

/**
 * Returns a copy of a command line with secret values replaced by `***`, by the flag table
 * (`lookup`: the kind of a flag name without its dashes, undefined when unknown):
 * - a secret flag's value in both forms, `--flag=value` and `--flag value`, whatever the value
 *   looks like (one starting with `-` included: the parser would take it as the value);
 * - when `--` comes where a secret flag awaits its value, everything after it;
 * - unknown flags whose name looks secret, like secret flags (see unknownFlagKind);
 * - `KEY=VALUE` arguments whose key looks secret (also as a flag's value: `--env HF_TOKEN=abc`)
 *   and passwords in URLs (`https://user:pw@host`).
 * Everything else is kept as is. The CLI's `redactArgs` (src/cli/flags.ts) gives its flag table.
 */
export function redactArgsWith(
  argv: readonly string[],
  lookup: (name: string) => FlagKind | undefined = () => undefined,
): string[] {
  const out: string[] = [];
  let pending: FlagKind | undefined; // a flag that awaits its value
  let hideRest = false;
  for (const arg of argv) {
    if (hideRest) {
      out.push(REDACTED);
      continue;
    }
    if (pending) {
      const p = pending;
      pending = undefined;
      if (p.secret && arg === "--") {
        // `--token -- value`: whatever follows may be the value.
        out.push(arg);
        hideRest = true;
      } else {
        out.push(p.secret ? REDACTED : redactValue(arg));
      }
      continue;
    }
    const flag = arg === "--" ? null : /^(--?)([^=]+)(=([\s\S]*))?$/.exec(arg);
    if (flag) {
      const name = flag[2];
      const kind = lookup(name) ?? unknownFlagKind(name);
      if (flag[3] !== undefined) {
        out.push(`${flag[1]}${name}=${kind.secret ? REDACTED : redactValue(flag[4])}`);
      } else {
        out.push(arg);
        if (kind.takesValue) pending = kind;
      }
      continue;
    }
    out.push(redactValue(arg));
  }
  return out;
}
