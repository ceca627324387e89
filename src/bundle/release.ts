/**
 * The release manifest: what a Cortex release needs (assets/manifest.json, embedded in the
 * binary; `--manifest FILE` replaces it). Validated with zod; errors name the file and field.
 */
import { z } from "zod";
import { InstallError, preflightError } from "../errors.ts";

const Sha256Hex = z.string().regex(/^[0-9a-f]{64}$/, "must be 64 lower-case hex digits");
const EnvKey = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "must be an env key (A-Z, 0-9, _)");
/** A release line: "0.1", "0.2". */
const Line = z.string().regex(/^\d+\.\d+$/, 'must be a release line like "0.2"');

export const ReleaseImageSchema = z.object({
  /** A short name used by the plan and env keys: "vllm", "llamacpp", "postgres", ... */
  role: z.string().min(1),
  /** Repository without tag, e.g. "vllm/vllm-openai" or "postgres". */
  repository: z.string().min(1),
  critical: z.boolean(),
  /** Env key that receives the shipped ref of this image (e.g. VLLM_IMAGE). */
  envKey: EnvKey.optional(),
});

export const ReadinessSchema = z.object({
  service: z.string().min(1),
  url: z.url(),
  /** Top-level JSON fields the response body must have, e.g. {"status": "ok"}. */
  expectJson: z.record(z.string(), z.string()).optional(),
  /**
   * An env key that moves the host port (e.g. PROM_PORT): when the root .env or the environment
   * sets it, its value replaces the URL's port (see `readinessUrl`).
   */
  portKey: EnvKey.optional(),
});

/** A host port the stack publishes, and the env key that moves it (cortex-0.2-facts §4). */
export const PortSchema = z.object({
  service: z.string().min(1),
  port: z.number().int().min(1).max(65535),
  key: EnvKey.optional(),
});

/** The fields of one release line's policy (shared by schema 1 files and schema 2 lines). */
const policyFields = {
  /** The Cortex version this policy describes. */
  release: z.string().min(1),
  /** The release line it serves ("0.1", "0.2"); absent in old schema 1 files. */
  line: Line.optional(),
  images: z.array(ReleaseImageSchema),
  /**
   * Criticality by the role images.json gives an image (0.2: engine, program, deps, infra), for
   * refs no `images` entry matches. cortex-0.2-facts §1: engines and program critical, deps and
   * most infra optional (postgres, redis, prometheus are critical through `images`).
   */
  roles: z.record(z.string(), z.boolean()).default({}),
  env: z.object({
    offline: z.record(EnvKey, z.string()),
    online: z.record(EnvKey, z.string()),
    /** Keys set to paths; values may use {modelsDir} and {hfCacheDir}. */
    paths: z.record(EnvKey, z.string()),
    /** Keys generated from a CSPRNG when blank, never rotated (0.2: INTERNAL_VLLM_API_KEY...). */
    secrets: z.array(EnvKey).default([]),
  }),
  readiness: z.array(ReadinessSchema),
  /** sha256 pins by bundle-relative path; a pin beats checksums.sha256. */
  pins: z.record(z.string(), Sha256Hex).default({}),
  /** Which compose file runs, and which ones are refused with this release and why. */
  compose: z.object({
    /** The compose file to run (0.2: docker.compose.prod.yaml); absent: prod if present, else dev. */
    run: z.string().min(1).optional(),
    /** File name -> why it cannot run with this release's bundles (a preflight error). */
    refuse: z.record(z.string(), z.string()).default({}),
  }).default({ refuse: {} }),
  /** Where settings go and which keys compose refuses to start without. */
  settings: z.object({
    /**
     * `backend-env` (0.1): backend/.env + the root .env for interpolated keys + an override that
     * adds backend/.env to the gateway's env_file. `root-env` (0.2): the root .env only, plus the
     * override's `environment:` for keys no `environment:` entry carries (cortex-0.2-facts §3).
     */
    mode: z.enum(["backend-env", "root-env"]).default("backend-env"),
    /** Compose file name -> its `${KEY:?...}` keys (compose does not render without them). */
    required: z.record(z.string(), z.array(EnvKey)).default({}),
  }).default({ mode: "backend-env", required: {} }),
  /** Host ports of the stack (for the plan, the port preflight and the default CORS origin). */
  ports: z.array(PortSchema).default([]),
};

/** A release manifest file of schema 1: one policy (what `--manifest FILE` has always taken). */
export const ReleaseManifestSchema = z.object({ schema: z.literal(1), ...policyFields });

/** One line of a schema 2 policy set: `line` is required. */
export const ReleasePolicyLineSchema = z.object({ ...policyFields, line: Line });

/** The embedded policy set (assets/manifest.json, schema 2): one policy per release line. */
export const ReleasePolicySetSchema = z.object({
  schema: z.literal(2),
  lines: z.array(ReleasePolicyLineSchema).min(1),
}).refine(
  (s) => new Set(s.lines.map((l) => l.line)).size === s.lines.length,
  { message: "each release line may appear once", path: ["lines"] },
);

/** One release line's policy (the type every step reads; schema 1 files parse into it). */
export type ReleaseManifest = z.infer<typeof ReleaseManifestSchema>;
export type ReleasePolicy = ReleaseManifest;
export type ReleaseImage = z.infer<typeof ReleaseImageSchema>;
export type Readiness = z.infer<typeof ReadinessSchema>;

/** The policies in force: the embedded set, or what `--manifest FILE` gave. */
export interface ReleasePolicies {
  /** "embedded manifest" or the file's path. */
  source: string;
  /** One policy per line; a schema 1 file gives one policy that serves every bundle. */
  lines: ReleaseManifest[];
  /** True for a schema 1 file: its one policy applies whatever the bundle's release line. */
  single: boolean;
}

/** Formats a zod error as `field.path: message` lines. */
export function formatZodError(err: z.ZodError): string {
  return err.issues
    .map((i) => `${i.path.length ? i.path.join(".") : "(root)"}: ${i.message}`)
    .join("; ");
}

function parseJsonText(text: string, name: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw preflightError(
      "bundle",
      `Cannot read release manifest "${name}": not valid JSON: ${(e as Error).message}`,
    );
  }
}

const MANIFEST_HINT = "Fix the file or run without --manifest to use the embedded one.";

/**
 * Parses a release manifest or policy set (schema 1 or 2); `name` is used in errors. Returns
 * the policies, each line's fields validated and defaulted.
 */
export function parseReleasePolicies(text: string, name: string): ReleasePolicies {
  const json = parseJsonText(text, name);
  const schema = (json as { schema?: unknown } | null)?.schema;
  if (schema === 2) {
    const r = ReleasePolicySetSchema.safeParse(json);
    if (!r.success) {
      throw preflightError(
        "bundle",
        `Cannot read release manifest "${name}": ${formatZodError(r.error)}`,
        MANIFEST_HINT,
      );
    }
    return {
      source: name,
      lines: r.data.lines.map((l) => ({ schema: 1 as const, ...l })),
      single: false,
    };
  }
  return { source: name, lines: [parseReleaseManifest(text, name)], single: true };
}

/** Parses and validates a schema 1 release manifest's text; `name` is used in errors. */
export function parseReleaseManifest(text: string, name: string): ReleaseManifest {
  const r = ReleaseManifestSchema.safeParse(parseJsonText(text, name));
  if (!r.success) {
    throw preflightError(
      "bundle",
      `Cannot read release manifest "${name}": ${formatZodError(r.error)}`,
      MANIFEST_HINT,
    );
  }
  return r.data;
}

export const EMBEDDED_MANIFEST_URL = new URL("../../assets/manifest.json", import.meta.url);

/** The largest `--manifest` file read (the embedded one is a few KiB). */
export const MAX_RELEASE_MANIFEST_BYTES = 1024 * 1024;

/** Loads `--manifest FILE` (schema 1 or 2) or the embedded policy set. */
export async function loadReleasePolicies(file?: string): Promise<ReleasePolicies> {
  if (file) {
    let text: string;
    try {
      const st = await Deno.stat(file);
      if (!st.isFile) throw new Error("not a regular file");
      if (st.size > MAX_RELEASE_MANIFEST_BYTES) {
        throw preflightError(
          "bundle",
          `Cannot read release manifest "${file}": it is ${st.size} B, over the ${MAX_RELEASE_MANIFEST_BYTES} B manifest size cap`,
          "Pass the release manifest JSON file, not a bundle or an image.",
        );
      }
      text = await Deno.readTextFile(file);
    } catch (e) {
      if (e instanceof InstallError) throw e;
      throw preflightError(
        "bundle",
        `Cannot read release manifest "${file}": ${(e as Error).message}`,
      );
    }
    return parseReleasePolicies(text, file);
  }
  return parseReleasePolicies(
    await Deno.readTextFile(EMBEDDED_MANIFEST_URL),
    "embedded manifest",
  );
}

/** The line whose policy `install` and `rollback` use until they select by bundle (0.1). */
export const DEFAULT_LINE = "0.1";

/**
 * Loads `--manifest FILE` or the embedded manifest and returns ONE policy: the file's (schema
 * 1), else the `DEFAULT_LINE` policy of the set. For callers that do not select by bundle yet.
 */
export async function loadReleaseManifest(file?: string): Promise<ReleaseManifest> {
  const p = await loadReleasePolicies(file);
  return p.single ? p.lines[0] : policyForLine(p, DEFAULT_LINE) ?? p.lines[0];
}

/** The policy of a release line in a set (a single-policy file serves every line). */
export function policyForLine(p: ReleasePolicies, line: string): ReleaseManifest | undefined {
  if (p.single) return p.lines[0];
  return p.lines.find((l) => l.line === line);
}

/**
 * Pins that apply to a bundle read with `policy`: its own, then those of every other line for
 * paths it does not pin. The line is chosen from bundle.json, which no checksum covers, so a
 * rewritten bundle.json must not be able to pick a line without pins.
 */
/** The pin of a bundle path, if any (own keys only: a file named `constructor` has no pin). */
export function pinOf(pins: Record<string, string>, path: string): string | undefined {
  return Object.hasOwn(pins, path) ? pins[path] : undefined;
}

export function pinsFor(p: ReleasePolicies, policy: ReleaseManifest): Record<string, string> {
  const out: Record<string, string> = {};
  for (const l of p.lines) Object.assign(out, l.pins);
  return { ...out, ...policy.pins };
}

// ---------------------------------------------------------------------------------------------
// Release lines and versions

/** Whether a version string names a release ("0.2.0", "v0.2.1"), not "dev", "" or a word. */
export function isConcreteVersion(v: string | undefined): v is string {
  return v !== undefined && /^v?\d+\.\d+(\.\d+)?([-+.][0-9A-Za-z.+-]*)?$/.test(v.trim());
}

/** "0.2.0" -> "0.2", "v0.1.1" -> "0.1"; undefined for "dev" and other non-versions. */
export function releaseLine(v: string | undefined): string | undefined {
  if (!isConcreteVersion(v)) return undefined;
  const m = v.trim().replace(/^v/, "").match(/^(\d+)\.(\d+)/)!;
  return `${Number(m[1])}.${Number(m[2])}`;
}

function sameVersion(a: string, b: string): boolean {
  return a.trim().replace(/^v/, "") === b.trim().replace(/^v/, "");
}

function lineCompare(a: string, b: string): number {
  const [a1, a2] = a.split(".").map(Number);
  const [b1, b2] = b.split(".").map(Number);
  return a1 !== b1 ? a1 - b1 : a2 - b2;
}

/** What the bundle says of its release. */
export interface BundleVersionEvidence {
  /** bundle.json `cortex_version` (0.2) or manifest.json's (0.1); "dev" or absent is unknown. */
  version?: string;
  /**
   * The line its layout belongs to: "0.2" for bundle.json bundles, "0.1" for manifest.json
   * packages, undefined for a plain folder of tars (any line).
   */
  layoutLine?: string;
  /** Where the version came from, for messages ("bundle.json"). */
  source: string;
}

/** What the Cortex checkout says of its release (see src/host/checkout.ts). */
export interface CheckoutVersionEvidence {
  /** versions.env CORTEX_VERSION (0.2); 0.1 checkouts carry no Cortex version. */
  version?: string;
  /** The line its files belong to ("0.2": root versions.env; "0.1": scripts/versions.env). */
  line?: string;
  /** The file it came from, for messages. */
  source: string;
}

export interface PolicyChoice {
  policy: ReleaseManifest;
  line: string;
  /** The concrete release, when the bundle or the checkout names one. */
  version?: string;
  /** Which side decided: both agree, only one knew, or only the bundle's layout said. */
  decidedBy: "both" | "bundle" | "checkout" | "layout";
  warnings: string[];
}

const POLICY_HINT = "Use the Cortex checkout of the bundle's release (e.g. `git checkout " +
  "v<version>`), or a bundle made from this checkout.";

/**
 * Chooses the release policy from the bundle's version and the checkout's versions.env (pure).
 * A concrete version beats "dev" or absent on the other side: the checkout because its compose
 * files and versions.env name the image tags that will run (an Admin-UI export from a gateway
 * without CORTEX_VERSION says "dev"), the bundle because `verify`/`load` have no checkout. Two
 * concrete versions must be equal, two known lines must be equal; with neither, the bundle's
 * layout decides its line. Throws a preflight error (exit 3) on a disagreement or a line no
 * policy serves.
 */
export function selectPolicy(
  p: ReleasePolicies,
  bundle: BundleVersionEvidence,
  checkout?: CheckoutVersionEvidence,
): PolicyChoice {
  const warnings: string[] = [];
  const bv = isConcreteVersion(bundle.version) ? bundle.version.trim() : undefined;
  const cv = isConcreteVersion(checkout?.version) ? checkout!.version!.trim() : undefined;
  const bLine = bv ? releaseLine(bv)! : undefined;
  if (bLine && bundle.layoutLine && lineCompare(bLine, bundle.layoutLine) < 0) {
    throw preflightError(
      "bundle",
      `Cannot read the bundle: ${bundle.source} says Cortex ${bv}, but its layout is Cortex ${bundle.layoutLine}'s`,
      "Re-copy the bundle from the transfer media; Cortex writes bundle.json only from 0.2 on.",
    );
  }
  const cLine = cv ? releaseLine(cv)! : checkout?.line;
  if (bv && cv && !sameVersion(bv, cv)) {
    throw preflightError(
      "preflight",
      `Cannot install Cortex ${bv} (${bundle.source}) into a checkout of Cortex ${cv} (${
        checkout!.source
      }): they must be the same release`,
      POLICY_HINT,
    );
  }
  const bundleLine = bLine ?? bundle.layoutLine;
  if (bundleLine && cLine && bundleLine !== cLine) {
    throw preflightError(
      "preflight",
      `Cannot install a Cortex ${bv ?? `${bundleLine}.x`} bundle (${bundle.source}) into a Cortex ${
        cv ?? `${cLine}.x`
      } checkout (${checkout!.source}): they must be the same release line`,
      POLICY_HINT,
    );
  }
  let line: string;
  let decidedBy: PolicyChoice["decidedBy"];
  if (bv) {
    line = bLine!;
    decidedBy = cv ? "both" : "bundle";
  } else if (cv) {
    line = cLine!;
    decidedBy = "checkout";
    warnings.push(
      `${bundle.source} names no release (${
        bundle.version === undefined ? "no cortex_version" : `cortex_version "${bundle.version}"`
      }): using the checkout's Cortex ${cv} (${checkout!.source})`,
    );
  } else if (bundleLine) {
    line = bundleLine;
    decidedBy = "layout";
  } else {
    line = cLine ?? DEFAULT_LINE;
    decidedBy = cLine ? "checkout" : "layout";
  }
  const policy = policyForLine(p, line);
  if (!policy) {
    const known = p.lines.map((l) => `${l.line}.x`).join(", ");
    throw preflightError(
      "bundle",
      `Cannot install Cortex ${bv ?? cv ?? line}: ${p.source} has policies for ${known} only`,
      "Use a cortex-install made for this release, or pass --manifest FILE with its policy.",
    );
  }
  if (p.single) {
    const own = policy.line ?? releaseLine(policy.release);
    if (own && own !== line) {
      warnings.push(
        `The release manifest "${p.source}" describes Cortex ${policy.release}; the bundle is ${
          bv ?? cv ?? line
        }: using it as given (--manifest)`,
      );
    }
  }
  const version = bv ?? cv;
  return { policy, line, ...(version ? { version } : {}), decidedBy, warnings };
}

/**
 * A readiness URL with its port moved by `portKey` when `lookup` gives a valid port (the root
 * .env's PROM_PORT, say). Returns the URL as written otherwise.
 */
export function readinessUrl(r: Readiness, lookup: (key: string) => string | undefined): string {
  if (!r.portKey) return r.url;
  const v = lookup(r.portKey)?.trim();
  if (!v || !/^\d{1,5}$/.test(v) || Number(v) < 1 || Number(v) > 65535) return r.url;
  const u = new URL(r.url);
  u.port = v;
  return u.toString();
}

/**
 * Why this release refuses a compose file (its base name), or undefined when it may run.
 * 0.2 bundles ship only prod-target images, so its dev file is refused (cortex-0.2-facts §4).
 */
export function refusedComposeFile(
  policy: ReleaseManifest,
  composeFile: string,
): string | undefined {
  const base = composeFile.slice(composeFile.lastIndexOf("/") + 1);
  return policy.compose.refuse[base];
}

/** `docker.io/library/postgres:16` and `postgres:16` are the same; returns the short form. */
export function normalizeRef(ref: string): string {
  let r = ref.trim();
  for (const p of ["docker.io/library/", "index.docker.io/library/", "docker.io/"]) {
    if (r.startsWith(p)) {
      r = r.slice(p.length);
      break;
    }
  }
  return r;
}

/** Splits a ref into repository and tag (`latest` when none); digests stay with the repository. */
export function splitRef(ref: string): { repository: string; tag: string } {
  const r = normalizeRef(ref);
  if (r.includes("@")) return { repository: r.split("@")[0], tag: "" };
  const slash = r.lastIndexOf("/");
  const colon = r.lastIndexOf(":");
  if (colon > slash) return { repository: r.slice(0, colon), tag: r.slice(colon + 1) };
  return { repository: r, tag: "latest" };
}

/** The release image whose repository matches this ref, if any. */
export function matchReleaseImage(m: ReleaseManifest, ref: string): ReleaseImage | undefined {
  const { repository } = splitRef(ref);
  return m.images.find((i) => normalizeRef(i.repository) === repository);
}

/** Cortex's own loader rule: refs with vllm, llama, postgres or redis are critical. */
export function cortexCritical(ref: string): boolean {
  return /vllm|llama|postgres|redis/i.test(ref);
}
