/**
 * Reads a compose file the way Compose does for what the installer needs: `${VAR}` interpolation
 * (from the process env, then the root `.env` beside the file), the project name, profiles, and
 * per service its image, ports, env files and dependencies. Then `planImages` decides, for every
 * image a started service needs, whether it is shipped, already present or must be retagged.
 */
import { parse as parseYaml } from "yaml";
import { preflightError } from "../errors.ts";
import { ROOT_ENV } from "../layout.ts";
import { normalizeRef, splitRef } from "../bundle/release.ts";
import { envRecord, parseEnv } from "./dotenv.ts";

/** One active service of a compose file, after interpolation. */
export interface ComposeService {
  name: string;
  /** The `image:` value; undefined when the service only has `build:`. */
  image?: string;
  build: boolean;
  healthcheck: boolean;
  network_mode?: string;
  /** Published host ports (ranges expanded); container-only ports are left out. */
  ports: number[];
  env_file: string[];
  depends_on: string[];
  runtime?: string;
  profiles: string[];
  /** Bind mounts of the short syntax (`host:container[:mode]`, host path absolute or relative). */
  volumes: { source: string; destination: string }[];
  /** `environment:` (map or list form), interpolated. */
  environment: Record<string, string>;
}

export interface ComposeModel {
  file: string;
  /** Top-level `name:`, else the folder name as Compose derives it. */
  project: string;
  /** Active services, in file order. */
  services: ComposeService[];
  /** Every service name in the file, active or not. */
  allServices: string[];
  /** Variables used but set nowhere (Compose warns and uses ""). */
  unset: string[];
}

export type Lookup = (name: string) => string | undefined;

/** Thrown by interpolate() for `${VAR:?msg}` / `${VAR?msg}` and malformed `${`. */
export class InterpolationError extends Error {}

/** Finds the `}` closing a `${` whose body starts at `i`, skipping nested `${...}`. */
function closingBrace(s: string, i: number): number {
  let depth = 1;
  for (let j = i; j < s.length; j++) {
    if (s[j] === "$" && s[j + 1] === "{") {
      depth++;
      j++;
    } else if (s[j] === "}" && --depth === 0) return j;
  }
  return -1;
}

/**
 * Compose-style interpolation of one string: `$$` -> `$`, `$VAR`, `${VAR}`, `${VAR:-def}`,
 * `${VAR-def}`, `${VAR:?err}`, `${VAR?err}`, `${VAR:+alt}`, `${VAR+alt}` (defaults may nest).
 * An unset variable without default becomes "" and is reported through `onUnset`.
 */
export function interpolate(s: string, lookup: Lookup, onUnset?: (name: string) => void): string {
  let out = "";
  let i = 0;
  while (i < s.length) {
    const c = s[i];
    if (c !== "$") {
      out += c;
      i++;
      continue;
    }
    const n = s[i + 1];
    if (n === "$") {
      out += "$";
      i += 2;
    } else if (n === "{") {
      const end = closingBrace(s, i + 2);
      if (end < 0) throw new InterpolationError(`Invalid interpolation format in "${s}"`);
      out += expand(s.slice(i + 2, end), lookup, onUnset, s);
      i = end + 1;
    } else {
      const m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(s.slice(i + 1));
      if (m) {
        const v = lookup(m[0]);
        if (v === undefined) onUnset?.(m[0]);
        out += v ?? "";
        i += 1 + m[0].length;
      } else {
        out += "$";
        i++;
      }
    }
  }
  return out;
}

function expand(
  body: string,
  lookup: Lookup,
  onUnset: ((n: string) => void) | undefined,
  whole: string,
) {
  const m = /^([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([\s\S]*))?$/.exec(body);
  if (!m) throw new InterpolationError(`Invalid interpolation format in "${whole}"`);
  const [, name, op, arg = ""] = m;
  const v = lookup(name);
  const empty = v === undefined || (op?.startsWith(":") && v === "");
  switch (op) {
    case undefined:
      if (v === undefined) onUnset?.(name);
      return v ?? "";
    case "-":
    case ":-":
      return empty ? interpolate(arg, lookup, onUnset) : v!;
    case "?":
    case ":?":
      if (empty) {
        throw new InterpolationError(
          `required variable ${name} is missing a value${arg ? `: ${arg}` : ""}`,
        );
      }
      return v!;
    default: // "+" / ":+"
      return empty ? "" : interpolate(arg, lookup, onUnset);
  }
}

/** Interpolates every string value (not keys) of a parsed YAML tree. */
function interpolateTree(node: unknown, lookup: Lookup, onUnset: (n: string) => void): unknown {
  if (typeof node === "string") return interpolate(node, lookup, onUnset);
  if (Array.isArray(node)) return node.map((x) => interpolateTree(x, lookup, onUnset));
  if (node && typeof node === "object") {
    // Null prototype: a `__proto__:` key of the file is a plain key.
    const out: Record<string, unknown> = Object.create(null);
    for (const [k, v] of Object.entries(node)) out[k] = interpolateTree(v, lookup, onUnset);
    return out;
  }
  return node;
}

/** Names of the variables a compose text interpolates (`${VAR...}` and `$VAR`, not `$$`). */
export function composeVariables(text: string): string[] {
  const names = new Set<string>();
  const re = /\$(\$|\{([A-Za-z_][A-Za-z0-9_]*)|([A-Za-z_][A-Za-z0-9_]*))/g;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    const name = m[2] ?? m[3];
    if (name) names.add(name);
    // Defaults may reference more variables: `${A:-${B}}` is found by continuing the scan.
  }
  return [...names].sort();
}

/**
 * Parses one compose `ports:` entry (short string/number syntax or long mapping syntax) into the
 * host ports it publishes. An entry with no host port (ephemeral) publishes nothing we can check.
 */
export function parsePortEntry(
  entry: unknown,
): { hostIp?: string; ports: number[]; protocol: string } {
  if (entry && typeof entry === "object") {
    const e = entry as Record<string, unknown>;
    const pub = e.published;
    const ports = pub === undefined || pub === "" ? [] : expandRange(String(pub));
    return {
      hostIp: typeof e.host_ip === "string" && e.host_ip ? e.host_ip : undefined,
      ports,
      protocol: typeof e.protocol === "string" ? e.protocol : "tcp",
    };
  }
  let s = String(entry).trim();
  let protocol = "tcp";
  const slash = s.lastIndexOf("/");
  if (slash >= 0) {
    protocol = s.slice(slash + 1);
    s = s.slice(0, slash);
  }
  let hostIp: string | undefined;
  const v6 = s.match(/^\[([^\]]+)\]:(.*)$/);
  if (v6) {
    hostIp = v6[1];
    s = v6[2];
  }
  const parts = s.split(":");
  if (parts.length === 1) return { hostIp, ports: [], protocol }; // container port only
  if (parts.length === 3) {
    hostIp = parts[0] || undefined;
    return { hostIp, ports: parts[1] ? expandRange(parts[1]) : [], protocol };
  }
  return { hostIp, ports: parts[0] ? expandRange(parts[0]) : [], protocol };
}

/** The most host ports one compose file may publish in total (ranges expanded). */
export const MAX_HOST_PORTS = 4096;

/** `9000-9002` -> [9000, 9001, 9002] (at most 1000 ports); `8080` -> [8080]; else []. */
export function expandRange(s: string): number[] {
  const m = s.trim().match(/^(\d{1,5})(?:-(\d{1,5}))?$/);
  if (!m) return [];
  const a = Number(m[1]);
  const b = Math.min(m[2] ? Number(m[2]) : a, 65535);
  const out: number[] = [];
  for (let p = a; p <= b && out.length < 1000; p++) out.push(p);
  return out;
}

/** Counts expanded host ports against MAX_HOST_PORTS; throws a preflight error naming the cap. */
export function portBudget(file: string): (ports: number[]) => number[] {
  let total = 0;
  return (ports) => {
    total += ports.length;
    if (total > MAX_HOST_PORTS) {
      throw preflightError(
        "preflight",
        `Cannot read compose file "${file}": its ports: entries publish more than ${MAX_HOST_PORTS} host ports (the port cap)`,
        "List the ports the stack uses; a range of thousands of ports is not a Cortex compose file.",
      );
    }
    return ports;
  };
}

/** The largest compose file read (Cortex's are about 10 KB). */
export const MAX_COMPOSE_BYTES = 1024 * 1024;
/** The deepest `[`/`{` nesting read (the YAML parser recurses per level). */
export const MAX_COMPOSE_NESTING = 64;

/** Which cap a compose text is over, if any (one linear scan). */
function composeCapHit(text: string): string | undefined {
  if (text.length > MAX_COMPOSE_BYTES) {
    return `it is over ${MAX_COMPOSE_BYTES} characters (the compose size cap)`;
  }
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x5b || c === 0x7b) {
      if (++depth > MAX_COMPOSE_NESTING) {
        return `it nests [ or { more than ${MAX_COMPOSE_NESTING} levels deep (the nesting cap)`;
      }
    } else if ((c === 0x5d || c === 0x7d) && depth > 0) depth--;
  }
  return undefined;
}

/**
 * Parses a compose YAML text and interpolates its values: the one compose reading of the
 * installer (install, plan, doctor). YAML errors (alias bombs included: the parser caps aliases),
 * `${VAR:?}` of unset variables and bad `${` are preflight errors naming the file.
 */
export function composeDocument(
  file: string,
  text: string,
  lookup: Lookup,
  onUnset: (name: string) => void = () => {},
): unknown {
  return composeInterpolate(file, composeYaml(file, text), lookup, onUnset);
}

/** Parses compose YAML (caps first), not interpolated; errors are preflight errors naming the file. */
export function composeYaml(file: string, text: string): unknown {
  const cap = composeCapHit(text);
  if (cap) {
    throw preflightError(
      "preflight",
      `Cannot read compose file "${file}": ${cap}`,
      "Pass Cortex's own compose file; this one is damaged or crafted.",
    );
  }
  try {
    return parseYaml(text, { logLevel: "error" });
  } catch (e) {
    throw preflightError(
      "preflight",
      `Cannot read compose file "${file}": ${(e as Error).message}`,
      "Fix the compose file.",
    );
  }
}

/** Interpolates a parsed compose value (or part of one); errors are preflight errors naming the file. */
export function composeInterpolate(
  file: string,
  value: unknown,
  lookup: Lookup,
  onUnset: (name: string) => void = () => {},
): unknown {
  try {
    return interpolateTree(value, lookup, onUnset);
  } catch (e) {
    throw preflightError(
      "preflight",
      `Cannot read compose file "${file}": ${(e as Error).message}`,
      "Fix the compose file or set the variable it requires.",
    );
  }
}

/** Host ports of one `ports:` entry (short or long syntax); [] for container-only entries. */
export function hostPorts(entry: unknown): number[] {
  return parsePortEntry(entry).ports;
}

function strList(v: unknown): string[] {
  if (v === undefined || v === null) return [];
  if (typeof v === "string") return [v];
  if (Array.isArray(v)) {
    return v.map((x) =>
      typeof x === "string" ? x : String((x as Record<string, unknown>)?.path ?? "")
    ).filter((x) => x !== "");
  }
  if (typeof v === "object") return Object.keys(v as object);
  return [];
}

/** Compose's default project name for a folder: lower case, only [a-z0-9_-]. */
export function defaultProjectName(dir: string): string {
  const base = dir.replace(/\/+$/, "").split("/").pop() ?? "";
  return base.toLowerCase().replace(/[^a-z0-9_-]/g, "");
}

/**
 * The image name Compose gives a service that has `build:` and no `image:`:
 * `<project>-<service>` for Compose v2, `<project>_<service>` for v1.
 */
export function builtImageName(project: string, service: string, composeMajor: 1 | 2): string {
  return composeMajor === 1 ? `${project}_${service}` : `${project}-${service}`;
}

export interface ReadComposeOptions {
  /** The process environment (wins over the root `.env`). */
  env?: Record<string, string>;
  /** Active profiles (COMPOSE_PROFILES is not read: pass it here). */
  profiles?: string[];
}

/** Builds the model from compose text (pure); `dotenvText` is the root `.env` beside it. */
export function parseCompose(
  file: string,
  text: string,
  opts: ReadComposeOptions & { dotenvText?: string } = {},
): ComposeModel {
  const fileVars: Record<string, string> = opts.dotenvText !== undefined
    ? envRecord(parseEnv(opts.dotenvText))
    : Object.create(null);
  const env = opts.env ?? {};
  const lookup: Lookup = (n) =>
    Object.hasOwn(env, n) ? env[n] : Object.hasOwn(fileVars, n) ? fileVars[n] : undefined;
  const unset = new Set<string>();
  const doc = composeDocument(file, text, lookup, (n) => unset.add(n));
  if (
    !doc || typeof doc !== "object" || typeof (doc as { services?: unknown }).services !== "object"
  ) {
    throw preflightError("preflight", `Cannot read compose file "${file}": no "services:" section`);
  }
  const top = doc as { name?: unknown; services: Record<string, Record<string, unknown> | null> };
  const dir = file.includes("/") ? file.slice(0, file.lastIndexOf("/")) || "/" : ".";
  const project = typeof top.name === "string" && top.name
    ? top.name
    : defaultProjectName(dir === "." ? Deno.cwd() : dir);
  const active = new Set(opts.profiles ?? []);
  const services: ComposeService[] = [];
  const budget = portBudget(file);
  for (const [name, raw] of Object.entries(top.services ?? {})) {
    const s = raw ?? {};
    const profiles = strList(s.profiles);
    if (profiles.length > 0 && !profiles.some((p) => active.has(p))) continue;
    const svc: ComposeService = {
      name,
      build: s.build !== undefined && s.build !== null,
      healthcheck: !!s.healthcheck &&
        !(s.healthcheck as Record<string, unknown>).disable,
      ports: Array.isArray(s.ports) ? s.ports.flatMap((e) => budget(hostPorts(e))) : [],
      env_file: strList(s.env_file),
      depends_on: strList(s.depends_on),
      profiles,
      volumes: bindMounts(s.volumes, dir === "." ? Deno.cwd() : dir),
      environment: environmentOf(s.environment),
    };
    if (typeof s.image === "string" && s.image) svc.image = s.image;
    if (typeof s.network_mode === "string") svc.network_mode = s.network_mode;
    if (typeof s.runtime === "string") svc.runtime = s.runtime;
    services.push(svc);
  }
  return {
    file,
    project,
    services,
    allServices: Object.keys(top.services ?? {}),
    unset: [...unset].sort(),
  };
}

/** The bind mounts of a service's `volumes:` (named volumes left out), host paths absolute. */
function bindMounts(v: unknown, dir: string): { source: string; destination: string }[] {
  if (!Array.isArray(v)) return [];
  const out: { source: string; destination: string }[] = [];
  for (const e of v) {
    let source: string | undefined;
    let destination: string | undefined;
    if (typeof e === "string") {
      const parts = e.split(":");
      if (parts.length < 2) continue;
      [source, destination] = parts;
    } else if (e && typeof e === "object") {
      const o = e as Record<string, unknown>;
      if (o.type !== undefined && o.type !== "bind") continue;
      if (typeof o.source === "string") source = o.source;
      if (typeof o.target === "string") destination = o.target;
    }
    if (!source || !destination) continue;
    // A named volume has no slash and does not start with a dot.
    if (!source.startsWith("/") && !source.startsWith(".") && !source.startsWith("~")) continue;
    if (source.startsWith(".")) source = `${dir}/${source}`;
    out.push({ source, destination });
  }
  return out;
}

/** `environment:` as a record (map form, or `KEY=value` list form; a bare `KEY` is left out). */
function environmentOf(v: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (Array.isArray(v)) {
    for (const e of v) {
      if (typeof e !== "string") continue;
      const i = e.indexOf("=");
      if (i > 0) out[e.slice(0, i)] = e.slice(i + 1);
    }
  } else if (v && typeof v === "object") {
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
      if (x !== null && x !== undefined) out[k] = String(x);
    }
  }
  return out;
}

/**
 * Reads a compose file and the root `.env` beside it (when present), interpolates, applies
 * profiles and returns the active services. Errors are preflight InstallErrors naming the file.
 */
export async function readCompose(
  file: string,
  opts: ReadComposeOptions = {},
): Promise<ComposeModel> {
  const src = await readComposeSource(file);
  return parseCompose(file, src.text, { ...opts, dotenvText: src.dotenvText });
}

/** The compose file's text and the root `.env` beside it (undefined when there is none). */
export async function readComposeSource(
  file: string,
): Promise<{ text: string; dotenvText?: string }> {
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (e) {
    throw preflightError(
      "preflight",
      `Cannot read compose file "${file}": ${(e as Error).message}`,
      "Pass the Cortex checkout with --cortex-dir.",
    );
  }
  const dir = file.includes("/") ? file.slice(0, file.lastIndexOf("/")) || "/" : ".";
  let dotenvText: string | undefined;
  try {
    dotenvText = await Deno.readTextFile(`${dir}/${ROOT_ENV}`);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return { text, dotenvText };
}

/** An image that can satisfy a service: shipped in the bundle, or already in the engine. */
export interface AvailableImage {
  ref: string;
  imageId: string;
  origin: "shipped" | "present";
}

export interface ImageNeed {
  service: string;
  /** The ref compose will run (canonicalRef: short form, explicit tag). */
  ref: string;
  source: "shipped" | "present" | "retag";
  /** For "retag": the available ref to tag as `ref`. */
  from?: string;
  imageId?: string;
  /** Why this choice, when it was one (several tags of the same repository). */
  note?: string;
}

export interface ImagePlan {
  needs: ImageNeed[];
  missing: { service: string; ref: string }[];
}

/** A ref in one spelling: short form (normalizeRef) with an explicit tag (`:latest` when none). */
export function canonicalRef(ref: string): string {
  const r = normalizeRef(ref);
  if (r.includes("@")) return r;
  const { repository, tag } = splitRef(r);
  return `${repository}:${tag}`;
}

/** Compares tags so that newer-looking versions sort first (v2.47.0 before v2.9.0), then by name. */
function tagOrder(a: string, b: string): number {
  return b.localeCompare(a, "en", { numeric: true });
}

/**
 * Decides how each image a started service needs will exist after the load: shipped under that
 * ref, already present, or retagged from an image of the same repository (shipped preferred).
 * The bundle's images win over the engine's: a ref the engine has but the bundle does not ship
 * (`postgres:latest` of the previous release) is retagged from the shipped image of that
 * repository (`postgres:16`) when there is one with another image ID.
 * Built services (`build:` without `image:`) need `builtImageName(...):latest`; Cortex's Admin-UI
 * export ships them as `cortex-<service>`, which also satisfies `<project>_<service>` (Compose v1)
 * and a registry-prefixed `.../cortex-<service>` (prod compose) by retag.
 */
export function planImages(
  model: ComposeModel,
  available: AvailableImage[],
  opts: { composeMajor?: 1 | 2 } = {},
): ImagePlan {
  const major = opts.composeMajor ?? 2;
  const avail = available.map((a) => ({ ...a, ref: canonicalRef(a.ref), ...splitRef(a.ref) }));
  const needs: ImageNeed[] = [];
  const missing: { service: string; ref: string }[] = [];
  const rank = (o: AvailableImage["origin"]) => (o === "shipped" ? 0 : 1);
  for (const svc of model.services) {
    const ref = canonicalRef(svc.image ?? builtImageName(model.project, svc.name, major));
    const exact = avail.filter((a) => a.ref === ref).sort((a, b) =>
      rank(a.origin) - rank(b.origin)
    );
    if (exact.length > 0 && exact[0].origin === "shipped") {
      needs.push({ service: svc.name, ref, source: "shipped", imageId: exact[0].imageId });
      continue;
    }
    const { repository, tag } = splitRef(ref);
    if (tag === "") { // a digest ref can only be satisfied exactly
      if (exact.length > 0) {
        needs.push({ service: svc.name, ref, source: "present", imageId: exact[0].imageId });
      } else missing.push({ service: svc.name, ref });
      continue;
    }
    const appNames = [
      `${model.project}-${svc.name}`,
      `${model.project}_${svc.name}`,
      `cortex-${svc.name}`,
    ];
    const base = repository.split("/").pop()!;
    const repos = new Set([repository]);
    if (!svc.image || appNames.includes(base)) { for (const n of appNames) repos.add(n); }
    const cands = avail.filter((a) => repos.has(a.repository) && a.tag !== "")
      .sort((a, b) =>
        rank(a.origin) - rank(b.origin) ||
        Number(b.repository === repository) - Number(a.repository === repository) ||
        Number(b.tag === tag) - Number(a.tag === tag) || tagOrder(a.tag, b.tag) ||
        a.ref.localeCompare(b.ref)
      );
    // The exact ref is in the engine but not shipped (say `postgres:latest` of the previous
    // release): an image this bundle ships for that repository wins, so that an upgrade does not
    // keep running the old image under a reused tag. Same image ID: nothing to do.
    if (exact.length > 0) {
      const shipped = cands.find((c) => c.origin === "shipped");
      if (!shipped || shipped.imageId === exact[0].imageId) {
        needs.push({ service: svc.name, ref, source: "present", imageId: exact[0].imageId });
        continue;
      }
    }
    if (cands.length === 0) {
      missing.push({ service: svc.name, ref });
      continue;
    }
    const pick = cands[0];
    const need: ImageNeed = {
      service: svc.name,
      ref,
      source: "retag",
      from: pick.ref,
      imageId: pick.imageId,
    };
    const same = cands.filter((c) => c.origin === pick.origin);
    if (exact.length > 0) {
      need.note = `the engine's ${ref} is ${
        exact[0].imageId.slice(0, 19)
      }, not shipped by this bundle: retagged from the shipped ${pick.ref}`;
    } else if (same.length > 1) {
      need.note = `chose ${pick.ref} of ${same.length} ${pick.origin} candidates (${
        same.map((c) => c.ref).join(", ")
      })`;
    }
    needs.push(need);
  }
  return { needs, missing };
}
