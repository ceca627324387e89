/**
 * Cortex 0.2's generated secrets (INTERNAL_VLLM_API_KEY, SESSION_SECRET): when blank in the
 * root .env, taken from the same-named environment variable or generated from a CSPRNG as 64 hex
 * characters (what Cortex's ensure-env.sh does with `openssl rand -hex 32`). An existing value
 * is never rotated, on a re-run, an upgrade or a rollback: running model containers keep the old
 * INTERNAL_VLLM_API_KEY, and a new SESSION_SECRET logs everyone out. Pure but for the RNG,
 * which is injected. Values never leave through `shown` or warnings.
 */

/** Where a secret's value comes from. */
export type SecretSource = "kept" | "environment" | "generated";

export interface SecretPlan {
  key: string;
  source: SecretSource;
  /** The value to write. NEVER print it: show `shown`. */
  value: string;
  /** What people see in the plan: "(set)", "(from the environment)", "(generated)". */
  shown: string;
}

/** `n` random bytes as lower-case hex (2n characters) from Web Crypto's CSPRNG. */
export function generateSecret(
  n = 32,
  random: (b: Uint8Array) => Uint8Array = (b) => crypto.getRandomValues(b),
): string {
  const b = random(new Uint8Array(n));
  return [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
}

const SHOWN: Record<SecretSource, string> = {
  kept: "(set)",
  environment: "(from the environment)",
  generated: "(generated)",
};

/**
 * Plans each secret key (pure but for `generate`): the root .env's non-blank value is kept;
 * else a non-blank same-named environment variable is used; else one is generated. A differing
 * environment value never replaces a kept one (a warning says so, without either value).
 */
export function planSecrets(
  keys: readonly string[],
  current: Readonly<Record<string, string>>,
  env: (key: string) => string | undefined,
  generate: () => string = () => generateSecret(),
): { secrets: SecretPlan[]; warnings: string[] } {
  const secrets: SecretPlan[] = [];
  const warnings: string[] = [];
  for (const key of keys) {
    const have = current[key] ?? "";
    const fromEnv = env(key) ?? "";
    let source: SecretSource;
    let value: string;
    if (have.trim() !== "") {
      source = "kept";
      value = have;
      if (fromEnv.trim() !== "" && fromEnv !== have) {
        warnings.push(
          `${key} in the environment differs from the root .env's: the .env's is kept ` +
            `(cortex-install never rotates ${key}; change it in .env by hand if you must)`,
        );
      }
    } else if (fromEnv.trim() !== "") {
      source = "environment";
      value = fromEnv;
    } else {
      source = "generated";
      value = generate();
    }
    secrets.push({ key, source, value, shown: SHOWN[source] });
  }
  return { secrets, warnings };
}
