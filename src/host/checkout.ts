/**
 * What a Cortex checkout says of its release: Cortex 0.2 keeps its pins in the root
 * `versions.env` (plain `KEY=value`, no quotes, no expansion: it is both `source`d by bash and
 * `include`d by make), 0.1 in `scripts/versions.env` (`CORTEX_X="${CORTEX_X:-default}"`, no
 * Cortex version at all). Pure parsers plus one small reader.
 */
import { join } from "node:path";
import { releaseLine } from "../bundle/release.ts";
import type { CheckoutVersionEvidence } from "../bundle/release.ts";
import { preflightError } from "../errors.ts";
import { SCRIPT_VERSIONS_ENV, VERSIONS_ENV } from "../layout.ts";

const KEY_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * Parses a 0.2 `versions.env`: `KEY=value` lines, `#` comments and blank lines. Values are taken
 * literally (the format forbids quotes and expansion); a value wrapped in matching quotes anyway
 * is unwrapped. Lines that are not assignments are skipped.
 */
export function parseVersionsEnv(text: string): Record<string, string> {
  // Null prototype: keys come from the file.
  const out: Record<string, string> = Object.create(null);
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const eq = line.indexOf("=");
    if (eq <= 0) continue;
    const key = line.slice(0, eq).trim().replace(/^export\s+/, "");
    if (!KEY_RE.test(key)) continue;
    let value = line.slice(eq + 1).trim();
    const q = value[0];
    if ((q === '"' || q === "'") && value.length >= 2 && value.endsWith(q)) {
      value = value.slice(1, -1);
    }
    out[key] = value;
  }
  return out;
}

/**
 * Parses a 0.1 `scripts/versions.env`: `KEY="${KEY:-default}"` gives `default`, and
 * `KEY="repo:${OTHER}"` is expanded with the values read so far (what `source` does when the
 * environment sets none of them).
 */
export function parseScriptVersionsEnv(text: string): Record<string, string> {
  // Null prototype: keys come from the file.
  const out: Record<string, string> = Object.create(null);
  for (const [key, rawValue] of Object.entries(parseVersionsEnv(text))) {
    out[key] = rawValue.replace(
      /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g,
      (_m, name: string, def: string | undefined) => out[name] ?? def ?? "",
    );
  }
  return out;
}

/** A checkout's release evidence and the image pins its versions file names. */
export interface CheckoutVersions extends CheckoutVersionEvidence {
  /** `KEY -> value` of the versions file (0.2: VLLM_IMAGE, CORTEX_VERSION, ...). */
  values: Record<string, string>;
}

/**
 * What the checkout's files say (pure): 0.2's root versions.env (`CORTEX_VERSION`) wins over
 * 0.1's scripts/versions.env, which names no Cortex version (only line "0.1"). With neither,
 * nothing is known.
 */
export function checkoutVersions(
  cortexDir: string,
  root: string | undefined,
  script: string | undefined,
): CheckoutVersions {
  if (root !== undefined) {
    const values = parseVersionsEnv(root);
    const version = values.CORTEX_VERSION;
    return {
      source: join(cortexDir, VERSIONS_ENV),
      ...(version ? { version } : {}),
      line: releaseLine(version) ?? "0.2",
      values,
    };
  }
  if (script !== undefined) {
    return {
      source: join(cortexDir, SCRIPT_VERSIONS_ENV),
      line: "0.1",
      values: parseScriptVersionsEnv(script),
    };
  }
  return { source: cortexDir, values: {} };
}

async function readOptional(path: string): Promise<string | undefined> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw preflightError("preflight", `Cannot read "${path}": ${(e as Error).message}`);
  }
}

/** Reads the checkout's versions files (`checkoutVersions` on what is there). */
export async function readCheckoutVersions(cortexDir: string): Promise<CheckoutVersions> {
  return checkoutVersions(
    cortexDir,
    await readOptional(join(cortexDir, VERSIONS_ENV)),
    await readOptional(join(cortexDir, SCRIPT_VERSIONS_ENV)),
  );
}

/** The engine refs a versions file prefers (VLLM_IMAGE, LLAMACPP_IMAGE; 0.1's CORTEX_*_IMAGE). */
export function preferredEngineRefs(values: Record<string, string>): string[] {
  return ["VLLM_IMAGE", "LLAMACPP_IMAGE", "CORTEX_VLLM_IMAGE", "CORTEX_LLAMACPP_IMAGE"]
    .map((k) => values[k])
    .filter((v): v is string => !!v);
}
