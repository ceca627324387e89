/**
 * Starting the Cortex compose stack and waiting until it is really up: every started service with
 * a healthcheck healthy, the others still running, then the release manifest's readiness URLs.
 *
 * Pure core (argument building, the health decision, readiness judging, log redaction) with a thin
 * shell (`startStack`, `stackStatus`, `recreateServices`, `stopStack`) that runs compose and docker.
 * Works with Compose v2 (`docker compose`) and the standalone Compose v1 (`docker-compose` 1.29).
 */
import { isAbsolute, join, resolve } from "node:path";
import { parse as parseYaml, parseDocument } from "yaml";
import type { Context } from "../context.ts";
import {
  type ComposeChoice,
  type ComposeCli,
  detectCompose,
  inspectImages,
  type RunResult,
  tail,
} from "../docker.ts";
import { preflightError, stackError, throwIfAborted } from "../errors.ts";
import { DEFAULT_PROJECT, DEFAULT_WAIT_TIMEOUT_SEC, ROOT_ENV } from "../layout.ts";
import { exists } from "../fsutil.ts";
import { isSecretKey } from "../state/redact.ts";

// ---------------------------------------------------------------------------------------------
// Compose arguments (pure)
// ---------------------------------------------------------------------------------------------

/** What compose should run on: the project, its files (base + override) and profiles. */
export interface ComposeTarget {
  /** Compose project name (`-p`); containers carry `com.docker.compose.project=<project>`. */
  project: string;
  /** Compose files, absolute or relative to `cortexDir`, in merge order (base first). */
  files: string[];
  profiles: string[];
  /** The Cortex checkout: compose runs there and reads its root `.env`. */
  cortexDir: string;
  /**
   * The env file for interpolation: undefined means `<cortexDir>/.env`, null means none
   * (Compose v1 fails on an `--env-file` that does not exist, so the shell passes null then).
   */
  envFile?: string | null;
}

/** A ready-to-run compose command line. */
export interface ComposeInvocation {
  cmd: string;
  /** Global options only; append the subcommand and its options. */
  args: string[];
  /** Extra environment for the process (added to the inherited one). */
  env: Record<string, string>;
  cwd: string;
}

/**
 * Builds the compose command line so that the Cortex dir's root `.env` drives interpolation with
 * both Compose v1 and v2: cwd and `--project-directory` are the Cortex dir (relative paths such as
 * `./backend/.env.prod` resolve there), `--env-file <cortexDir>/.env` is explicit (v1 >= 1.25 and
 * v2 support it), profiles go as `--profile X` (v1 >= 1.28, v2) and in COMPOSE_PROFILES.
 */
export function composeArgs(cli: ComposeCli, t: ComposeTarget): ComposeInvocation {
  const [cmd, ...pre] = cli.cmd;
  const args = [...pre, "--project-name", t.project, "--project-directory", t.cortexDir];
  const envFile = t.envFile === undefined ? join(t.cortexDir, ROOT_ENV) : t.envFile;
  if (envFile) args.push("--env-file", envFile);
  for (const f of t.files) args.push("-f", isAbsolute(f) ? f : resolve(t.cortexDir, f));
  for (const p of t.profiles) args.push("--profile", p);
  const env: Record<string, string> = {};
  // A stray COMPOSE_PROFILES in the user's shell must not change what starts.
  if (t.profiles.length > 0) env.COMPOSE_PROFILES = t.profiles.join(",");
  return { cmd, args, env, cwd: t.cortexDir };
}

/** Options of `up` for this compose: never build, and never pull where compose can say so. */
export function upArgs(cli: ComposeCli, services: string[] = [], noDeps = false): string[] {
  const a = ["up", "-d", "--no-build"];
  if (cli.major === 2) a.push("--pull", "never");
  if (noDeps) a.push("--no-deps");
  return [...a, ...services];
}

/**
 * Compose v1 rejects the top-level `name:` key that Cortex's own compose files use ("'name' does
 * not match any of the regexes: '^x-'"). Returns the file's text without it, or undefined when
 * the file has no such key (use it as it is).
 */
export function stripTopLevelName(text: string): string | undefined {
  const doc = parseDocument(text);
  if (!doc.has("name")) return undefined;
  doc.delete("name");
  return String(doc);
}

/**
 * The services compose starts for these profiles, from the output of `compose config` (v2 drops
 * inactive services there, v1 keeps them with their `profiles:` key).
 */
export function activeServices(config: unknown, profiles: string[]): ServiceConfig[] {
  const services = (config as { services?: Record<string, unknown> } | null)?.services ?? {};
  const out: ServiceConfig[] = [];
  for (const [name, raw] of Object.entries(services)) {
    const s = (raw ?? {}) as { profiles?: unknown; image?: unknown; healthcheck?: unknown };
    const own = Array.isArray(s.profiles) ? s.profiles.map(String) : [];
    if (own.length > 0 && !own.some((p) => profiles.includes(p))) continue;
    out.push({ name, image: typeof s.image === "string" ? s.image : undefined });
  }
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

/** One service of the resolved compose config. */
export interface ServiceConfig {
  name: string;
  image?: string;
}

// ---------------------------------------------------------------------------------------------
// Container state and the health decision (pure)
// ---------------------------------------------------------------------------------------------

/** What `docker inspect` says about one compose container. */
export interface ContainerState {
  id: string;
  /** Container name without the leading slash, e.g. `cortex-gateway-1` or `cortex_gateway_1`. */
  name: string;
  service: string;
  image: string;
  /** created | running | restarting | exited | paused | dead | removing */
  status: string;
  /** starting | healthy | unhealthy; undefined when the container has no healthcheck. */
  health?: string;
  restartCount: number;
  exitCode: number;
  startedAt?: string;
  oneoff: boolean;
  /** Output of the last healthcheck run, for error messages. */
  lastHealthOutput?: string;
}

/** Maps `docker inspect` JSON (an array of containers) to container states. */
export function parseInspect(json: unknown): ContainerState[] {
  if (!Array.isArray(json)) return [];
  return json.map((c) => {
    // deno-lint-ignore no-explicit-any
    const j = c as any;
    const labels: Record<string, string> = j.Config?.Labels ?? {};
    const log: { Output?: string; ExitCode?: number }[] = j.State?.Health?.Log ?? [];
    const last = log.at(-1);
    return {
      id: String(j.Id ?? ""),
      name: String(j.Name ?? "").replace(/^\//, ""),
      service: labels["com.docker.compose.service"] ?? "",
      image: String(j.Config?.Image ?? ""),
      status: String(j.State?.Status ?? "unknown"),
      health: j.State?.Health?.Status,
      restartCount: Number(j.RestartCount ?? 0),
      exitCode: Number(j.State?.ExitCode ?? 0),
      startedAt: j.State?.StartedAt,
      oneoff: /^true$/i.test(labels["com.docker.compose.oneoff"] ?? "false"),
      lastHealthOutput: last?.Output?.trim() || undefined,
    };
  });
}

/** The outcome of one look at the stack. */
export type HealthVerdict =
  | { kind: "ready" }
  | { kind: "waiting"; pending: { service: string; container?: string; reason: string }[] }
  | { kind: "failed"; service: string; container?: string; reason: string };

export interface DecideOptions {
  /** Current time (ms since epoch). */
  now: number;
  /** A service without a healthcheck must have run this long to count as up. */
  stableMs: number;
  /** Restart counts right after `up`, by container ID; more restarts than this is a failure. */
  baseline?: Record<string, number>;
}

/**
 * Decides, from inspected containers, whether the started services are up: each service with a
 * healthcheck healthy, the others running for `stableMs`. A container that exited, died, is
 * restarting, restarted since `up`, or is unhealthy fails the stack at once.
 */
export function decideHealth(
  services: string[],
  containers: ContainerState[],
  o: DecideOptions,
): HealthVerdict {
  const pending: { service: string; container?: string; reason: string }[] = [];
  for (const service of services) {
    const cs = containers.filter((c) => c.service === service && !c.oneoff);
    if (cs.length === 0) {
      pending.push({ service, reason: "no container yet" });
      continue;
    }
    for (const c of cs) {
      const base = o.baseline?.[c.id] ?? 0;
      if (c.status === "exited" || c.status === "dead") {
        return {
          kind: "failed",
          service,
          container: c.name,
          reason: `exited with code ${c.exitCode}`,
        };
      }
      if (c.status === "restarting" || c.restartCount > base) {
        return {
          kind: "failed",
          service,
          container: c.name,
          reason: `keeps restarting (${c.restartCount} restart${c.restartCount === 1 ? "" : "s"}` +
            `, last exit code ${c.exitCode})`,
        };
      }
      if (c.health === "unhealthy") {
        const out = c.lastHealthOutput ? `: ${oneLine(c.lastHealthOutput)}` : "";
        return { kind: "failed", service, container: c.name, reason: `healthcheck fails${out}` };
      }
      if (c.status !== "running") {
        pending.push({ service, container: c.name, reason: c.status });
      } else if (c.health !== undefined && c.health !== "healthy") {
        pending.push({ service, container: c.name, reason: `health: ${c.health}` });
      } else if (c.health === undefined) {
        const started = c.startedAt ? Date.parse(c.startedAt) : NaN;
        if (!Number.isFinite(started) || o.now - started < o.stableMs) {
          pending.push({ service, container: c.name, reason: "just started" });
        }
      }
    }
  }
  return pending.length === 0 ? { kind: "ready" } : { kind: "waiting", pending };
}

function oneLine(s: string, max = 200): string {
  const t = s.replace(/\s+/g, " ").trim();
  return t.length > max ? `${t.slice(0, max)}…` : t;
}

// ---------------------------------------------------------------------------------------------
// Readiness URLs (pure judge + fetch)
// ---------------------------------------------------------------------------------------------

/** A readiness URL of the release manifest (`release.readiness`). */
export interface Readiness {
  service: string;
  url: string;
  /** Top-level JSON fields the body must have, e.g. {"status": "ok"}. */
  expectJson?: Record<string, string>;
}

/** The last answer of one readiness URL. */
export interface ReadinessResult {
  service: string;
  url: string;
  ok: boolean;
  /** HTTP status, when an answer came. */
  status?: number;
  /** Why it is not ok (connection refused, HTTP 503, field "status" is "starting"). */
  detail?: string;
}

/** Judges one HTTP answer against a readiness entry. Returns undefined when ok, else why not. */
export function judgeReadiness(
  status: number,
  body: string,
  expectJson?: Record<string, string>,
): string | undefined {
  if (status < 200 || status > 299) return `HTTP ${status}`;
  if (!expectJson || Object.keys(expectJson).length === 0) return undefined;
  let j: unknown;
  try {
    j = JSON.parse(body);
  } catch {
    return `the body is not JSON: ${oneLine(body, 80)}`;
  }
  if (typeof j !== "object" || j === null || Array.isArray(j)) {
    return "the body is not a JSON object";
  }
  for (const [k, want] of Object.entries(expectJson)) {
    const got = (j as Record<string, unknown>)[k];
    if (got === undefined) return `field "${k}" is missing`;
    const gotText = typeof got === "string" ? got : JSON.stringify(got);
    if (gotText !== want) return `field "${k}" is ${JSON.stringify(gotText)}, expected "${want}"`;
  }
  return undefined;
}

/** GETs one readiness URL with a short timeout; never throws (except on interruption). */
export async function checkReadiness(
  r: Readiness,
  signal: AbortSignal,
  timeoutMs = 3000,
): Promise<ReadinessResult> {
  throwIfAborted(signal);
  try {
    const res = await fetch(r.url, {
      signal: AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]),
      headers: { accept: "application/json" },
    });
    const body = await res.text();
    const why = judgeReadiness(res.status, body, r.expectJson);
    return {
      service: r.service,
      url: r.url,
      ok: why === undefined,
      status: res.status,
      detail: why,
    };
  } catch (e) {
    throwIfAborted(signal);
    const err = e as Error;
    const detail = err.name === "TimeoutError"
      ? `no answer within ${timeoutMs} ms`
      : oneLine(err.message.replace(/^error sending request[^:]*: /i, ""));
    return { service: r.service, url: r.url, ok: false, detail };
  }
}

// ---------------------------------------------------------------------------------------------
// Logs and secrets (pure)
// ---------------------------------------------------------------------------------------------

/**
 * Hides secrets in log text: values of `KEY=value` / `"key": "value"` / `key: value` pairs whose
 * key looks secret, passwords in URLs (`scheme://user:***@host`) and bearer/basic tokens.
 */
export function redactSecrets(text: string): string {
  return text
    .replace(
      /\b([A-Za-z_][A-Za-z0-9_.-]*)(["']?)(\s*[=:]\s*)("[^"\n]*"|'[^'\n]*'|[^\s,;&"'}]+)/g,
      (m, key: string, q: string, sep: string, value: string) => {
        if (!isSecretKey(key)) return m;
        // `foo: bar` after a secret-looking English word is rare; "://" is a URL scheme, not a pair.
        if (value.startsWith("//")) return m;
        const quote = value.startsWith('"') ? '"' : value.startsWith("'") ? "'" : "";
        return `${key}${q}${sep}${quote}***${quote}`;
      },
    )
    .replace(/\b([a-z][a-z0-9+.-]*:\/\/[^\s:/@]+:)[^\s@/]+@/gi, "$1***@")
    .replace(/\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{6,}/g, "$1 ***");
}

/**
 * Merges `docker logs --timestamps` stdout and stderr into one time-ordered text (timestamps
 * removed), keeping the last `n` lines.
 */
export function mergeLogs(stdout: string, stderr: string, n = 30): string {
  const lines: { t: string; i: number; text: string }[] = [];
  let i = 0;
  for (const text of [stdout, stderr]) {
    for (const line of text.split(/\r?\n/)) {
      if (line === "") continue;
      const m = /^(\d{4}-\d\d-\d\dT[\d:.]+Z) ?(.*)$/.exec(line);
      lines.push(m ? { t: m[1], i: i++, text: m[2] } : { t: "", i: i++, text: line });
    }
  }
  // RFC 3339 with nanoseconds: pad the fraction so that string order is time order.
  const key = (t: string) => t.replace(/\.(\d+)Z$/, (_, f: string) => `.${f.padEnd(9, "0")}Z`);
  lines.sort((a, b) => key(a.t) < key(b.t) ? -1 : key(a.t) > key(b.t) ? 1 : a.i - b.i);
  return lines.slice(-n).map((l) => l.text).join("\n");
}

// ---------------------------------------------------------------------------------------------
// The shell: running compose and docker
// ---------------------------------------------------------------------------------------------

/** Options of the stack functions. */
export interface StackOptions {
  cortexDir: string;
  /** Compose files (base + override), absolute or relative to cortexDir. */
  files: string[];
  /** Default `cortex` (layout.DEFAULT_PROJECT). */
  project?: string;
  profiles?: string[];
  /** The compose CLI; detected (as `composeChoice` asks) when absent. */
  compose?: ComposeCli;
  /** Which compose to detect when `compose` is absent (`--compose`; default auto). */
  composeChoice?: ComposeChoice;
  /** Readiness URLs (the release manifest's `readiness`); only those of started services run. */
  readiness?: Readiness[];
  /** How long to wait for health and readiness; default 300 s. */
  waitTimeoutSec?: number;
  /** How long a service without a healthcheck must keep running; default 3000 ms. */
  stableMs?: number;
  /** Per-request timeout of readiness URLs; default 3000 ms. */
  requestTimeoutMs?: number;
}

/** One service of a started (or inspected) stack. */
export interface ServiceStatus {
  name: string;
  container: string;
  state: string;
  health?: string;
  restartCount: number;
  exitCode: number;
}

/** What `startStack` / `recreateServices` return. */
export interface StackResult {
  project: string;
  /** `docker compose` or `docker-compose`, with its version. */
  compose: string;
  services: ServiceStatus[];
  readiness: ReadinessResult[];
  /** Readiness URLs that answered ok, for the CLI to print. */
  urls: string[];
  /** Time spent waiting for health and readiness. */
  waitedMs: number;
}

/** What `stackStatus` returns. */
export interface StackStatus {
  project: string;
  services: ServiceStatus[];
  /** Every container running, healthy where it has a healthcheck. */
  healthy: boolean;
  running: boolean;
}

interface Prepared {
  cli: ComposeCli;
  target: ComposeTarget;
  cleanup(): Promise<void>;
}

/** Detects compose, and for v1 writes copies of files that carry a top-level `name:`. */
async function prepare(ctx: Context, opts: StackOptions): Promise<Prepared> {
  const choice = opts.composeChoice ?? "auto";
  const cli = opts.compose ?? await detectCompose(ctx.docker, choice);
  if (!cli) {
    throw stackError(
      choice === "auto"
        ? "Cannot start the stack: neither `docker compose` nor `docker-compose` was found"
        : `Cannot start the stack: Compose ${choice} (--compose ${choice}) was not found`,
      "Install the Compose plugin (docker-compose-plugin) or docker-compose, then re-run.",
    );
  }
  const files = opts.files.map((f) => isAbsolute(f) ? f : resolve(opts.cortexDir, f));
  let tmp: string | undefined;
  if (cli.major === 1) {
    for (let i = 0; i < files.length; i++) {
      const text = await Deno.readTextFile(files[i]).catch((e) => {
        throw stackError(`Cannot read compose file "${files[i]}": ${(e as Error).message}`);
      });
      const stripped = stripTopLevelName(text);
      if (stripped === undefined) continue;
      tmp ??= await Deno.makeTempDir({ prefix: "cortex-install-compose-" });
      const copy = join(tmp, `${i}-${files[i].split("/").pop()}`);
      await Deno.writeTextFile(copy, stripped);
      files[i] = copy;
      ctx.log.debug(`compose v1: using "${copy}" (without the top-level name: key)`);
    }
  }
  const envPath = join(opts.cortexDir, ROOT_ENV);
  const target: ComposeTarget = {
    project: opts.project ?? DEFAULT_PROJECT,
    files,
    profiles: opts.profiles ?? [],
    cortexDir: opts.cortexDir,
    envFile: await exists(envPath) ? envPath : null,
  };
  return {
    cli,
    target,
    cleanup: async () => {
      if (tmp) await Deno.remove(tmp, { recursive: true }).catch(() => {});
    },
  };
}

async function runCompose(ctx: Context, p: Prepared, sub: string[]): Promise<RunResult> {
  const inv = composeArgs(p.cli, p.target);
  ctx.log.debug(`${inv.cmd} ${[...inv.args, ...sub].join(" ")}`);
  return await ctx.docker.run([...inv.args, ...sub], {
    cli: inv.cmd === "docker-compose" ? "docker-compose" : "docker",
    env: inv.env,
    cwd: inv.cwd,
  });
}

function composeName(cli: ComposeCli): string {
  return `${cli.cmd.join(" ")} ${cli.version}`;
}

/** Resolved config (`compose config`) and the services compose starts for the profiles. */
async function resolveServices(ctx: Context, p: Prepared): Promise<ServiceConfig[]> {
  const r = await runCompose(ctx, p, ["config"]);
  throwIfAborted(ctx.signal);
  if (r.code !== 0) {
    throw stackError(
      `Cannot start the stack: compose rejects the files ${
        p.target.files.map((f) => `"${f}"`).join(", ")
      }`,
      "Fix the compose file or the root .env it interpolates, then re-run.",
      redactSecrets(tail(r.stderr || r.stdout)),
    );
  }
  return activeServices(parseYaml(r.stdout), p.target.profiles);
}

/** What `validateCompose` checks: the files as they will be, before any is written. */
export interface ComposeValidation {
  cli: ComposeCli;
  cortexDir: string;
  project: string;
  profiles: string[];
  composeFile: string;
  /** The override's content as it will be written. */
  overrideText: string;
  /** The root .env's content as it will be written (it may hold secrets: never printed). */
  envText: string;
}

/**
 * Runs `compose config --quiet` on the compose file, the override and the root .env as they will
 * be, before anything is written: they go to a private temp folder (0700, files 0600; removed
 * afterwards), so compose reads the new settings without a byte written to the Cortex dir. Throws
 * a preflight error (exit 3) with compose's own words (secrets redacted) when it refuses them.
 */
export async function validateCompose(ctx: Context, v: ComposeValidation): Promise<void> {
  const tmp = await Deno.makeTempDir({ prefix: "cortex-install-config-" });
  try {
    await Deno.chmod(tmp, 0o700);
    const env = join(tmp, "root.env");
    const override = join(tmp, "override.yaml");
    await Deno.writeTextFile(env, v.envText, { mode: 0o600 });
    await Deno.writeTextFile(override, v.overrideText, { mode: 0o600 });
    const p: Prepared = {
      cli: v.cli,
      target: {
        project: v.project,
        files: [v.composeFile, override],
        profiles: v.profiles,
        cortexDir: v.cortexDir,
        envFile: env,
      },
      cleanup: () => Promise.resolve(),
    };
    const r = await runCompose(ctx, p, ["config", "--quiet"]);
    throwIfAborted(ctx.signal);
    if (r.code !== 0) {
      throw preflightError(
        "preflight",
        `Cannot use "${v.composeFile}": \`${
          v.cli.cmd.join(" ")
        } config\` refuses it with the settings cortex-install would write`,
        "Read compose's words below; fix the compose file or the root .env (or the flag that " +
          "sets the key), then run again. Nothing was written.",
        redactSecrets(tail(r.stderr || r.stdout)),
      );
    }
  } finally {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
}

/** Fails before `up` when an image a started service runs is not in the engine (no pulls). */
async function checkImages(ctx: Context, services: ServiceConfig[]): Promise<void> {
  const refs = [...new Set(services.flatMap((s) => s.image ? [s.image] : []))];
  const found = await inspectImages(ctx.docker, refs);
  const missing = services.filter((s) => s.image && !found.has(s.image));
  if (missing.length > 0) {
    const list = missing.map((s) => `"${s.image}" (service ${s.name})`).join(", ");
    throw stackError(
      `Cannot start the stack: image${missing.length > 1 ? "s" : ""} ${list} not in the engine`,
      "Nothing can be pulled here: load it from the bundle (run install again) or check the " +
        "image pins in the compose override.",
    );
  }
}

/** Lists the project's containers with `docker ps -a` + `docker inspect`. */
export async function listContainers(ctx: Context, project: string): Promise<ContainerState[]> {
  const ps = await ctx.docker.run(
    ["ps", "-a", "-q", "--no-trunc", "--filter", `label=com.docker.compose.project=${project}`],
  );
  if (ps.code !== 0) {
    throw stackError(
      `Cannot list the containers of project "${project}": docker ps failed`,
      undefined,
      tail(ps.stderr),
    );
  }
  const ids = ps.stdout.split(/\s+/).filter(Boolean);
  if (ids.length === 0) return [];
  // A container removed between ps and inspect makes inspect exit 1; the others are still printed.
  const r = await ctx.docker.run(["inspect", ...ids]);
  let json: unknown = [];
  try {
    json = JSON.parse(r.stdout || "[]");
  } catch {
    json = [];
  }
  return parseInspect(json).sort((a, b) => a.name.localeCompare(b.name));
}

/** The last `n` log lines of a container, stdout and stderr in time order, secrets redacted. */
export async function containerLogs(ctx: Context, container: string, n = 30): Promise<string> {
  const r = await ctx.docker.run(["logs", "--tail", String(n), "--timestamps", container]);
  if (r.code !== 0) return `(no logs: ${tail(r.stderr, 2)})`;
  return redactSecrets(mergeLogs(r.stdout, r.stderr, n));
}

function toStatus(c: ContainerState): ServiceStatus {
  return {
    name: c.service,
    container: c.name,
    state: c.status,
    health: c.health,
    restartCount: c.restartCount,
    exitCode: c.exitCode,
  };
}

async function failWithLogs(
  ctx: Context,
  message: string,
  hint: string,
  container: string | undefined,
  extra?: string,
): Promise<never> {
  let detail = extra ?? "";
  if (container) {
    const logs = await containerLogs(ctx, container, 30);
    detail += `${detail ? "\n" : ""}last log lines of ${container}:\n${logs || "(empty)"}`;
  }
  throw stackError(message, hint, detail || undefined);
}

/**
 * Waits until the started services are up (see `decideHealth`) and then every readiness URL of a
 * started service answers ok. Polls with backoff (250 ms growing to 2 s); throws `stackError`
 * (exit 6) with the failing container's last log lines when a service fails or time runs out.
 */
export async function waitForStack(
  ctx: Context,
  project: string,
  services: string[],
  opts: Pick<StackOptions, "readiness" | "waitTimeoutSec" | "stableMs" | "requestTimeoutMs">,
  baseline?: Record<string, number>,
): Promise<{ containers: ContainerState[]; readiness: ReadinessResult[]; waitedMs: number }> {
  const start = ctx.now().getTime();
  const timeoutMs = (opts.waitTimeoutSec ?? DEFAULT_WAIT_TIMEOUT_SEC) * 1000;
  const deadline = start + timeoutMs;
  const checks = (opts.readiness ?? []).filter((r) => services.includes(r.service));
  let delay = 250;
  let last: HealthVerdict = { kind: "waiting", pending: [] };
  let results: ReadinessResult[] = [];
  let containers: ContainerState[] = [];
  const hint = `Look at \`docker logs <container>\` and the service's settings, then re-run; ` +
    `a re-run only redoes what is missing.`;
  let announced = "";
  while (true) {
    throwIfAborted(ctx.signal);
    containers = await listContainers(ctx, project);
    last = decideHealth(services, containers, {
      now: ctx.now().getTime(),
      stableMs: opts.stableMs ?? 3000,
      baseline,
    });
    if (last.kind === "failed") {
      await failWithLogs(
        ctx,
        `Cannot start the stack: service "${last.service}" ${last.reason}`,
        hint,
        last.container,
      );
    }
    if (last.kind === "ready") {
      results = await Promise.all(
        checks.map((r) => checkReadiness(r, ctx.signal, opts.requestTimeoutMs ?? 3000)),
      );
      if (results.every((r) => r.ok)) {
        return { containers, readiness: results, waitedMs: ctx.now().getTime() - start };
      }
    }
    const waitingOn = last.kind === "waiting"
      ? last.pending.map((p) => `${p.service} (${p.reason})`).join(", ")
      : results.filter((r) => !r.ok).map((r) => r.url).join(", ");
    if (waitingOn !== announced) {
      ctx.log.debug(`waiting for ${waitingOn}`);
      announced = waitingOn;
    }
    const now = ctx.now().getTime();
    if (now >= deadline) break;
    await ctx.sleep(Math.min(delay, Math.max(0, deadline - now)), ctx.signal);
    delay = Math.min(2000, Math.round(delay * 1.5));
  }
  const secs = Math.round(timeoutMs / 1000);
  if (last.kind === "waiting") {
    const p = last.pending[0];
    const more = last.pending.length > 1 ? ` (and ${last.pending.length - 1} more)` : "";
    await failWithLogs(
      ctx,
      `Cannot start the stack: service "${p.service}" is not up after ${secs} s: ${p.reason}${more}`,
      `${hint} A slow host may need a longer --wait-timeout.`,
      p.container ?? containers.find((c) => c.service === p.service)?.name,
    );
  }
  const bad = results.find((r) => !r.ok)!;
  await failWithLogs(
    ctx,
    `Cannot start the stack: "${bad.url}" (${bad.service}) is not ready after ${secs} s: ${
      bad.detail ?? "not ok"
    }`,
    `${hint} A slow host may need a longer --wait-timeout.`,
    containers.find((c) => c.service === bad.service)?.name,
  );
  throw new Error("unreachable");
}

async function up(ctx: Context, p: Prepared, sub: string[]): Promise<void> {
  let r = await runCompose(ctx, p, sub);
  // Compose v2 before `up --pull` existed: retry without it (still --no-build).
  if (r.code !== 0 && /unknown flag: --pull/.test(r.stderr)) {
    const i = sub.indexOf("--pull");
    r = await runCompose(ctx, p, [...sub.slice(0, i), ...sub.slice(i + 2)]);
  }
  throwIfAborted(ctx.signal);
  if (r.code !== 0) {
    throw stackError(
      `Cannot start the stack: \`${p.cli.cmd.join(" ")} up\` failed (exit ${r.code})`,
      "Read compose's output below; fix the cause and re-run.",
      redactSecrets(tail(r.stderr || r.stdout)),
    );
  }
}

async function baselineOf(ctx: Context, project: string): Promise<Record<string, number>> {
  const b: Record<string, number> = {};
  for (const c of await listContainers(ctx, project)) b[c.id] = c.restartCount;
  return b;
}

async function startAndWait(
  ctx: Context,
  opts: StackOptions,
  recreate?: string[],
  waitOnlyFor?: string[],
): Promise<StackResult> {
  const p = await prepare(ctx, opts);
  try {
    const services = await resolveServices(ctx, p);
    const all = services.map((s) => s.name);
    const names = waitOnlyFor ?? all;
    if (recreate) {
      const unknown = recreate.filter((s) => !all.includes(s));
      if (unknown.length > 0) {
        throw stackError(
          `Cannot recreate service${unknown.length > 1 ? "s" : ""} ${
            unknown.map((s) => `"${s}"`).join(", ")
          }: not in the compose files`,
          `Services: ${all.join(", ")}`,
        );
      }
    }
    await checkImages(ctx, recreate ? services.filter((s) => recreate.includes(s.name)) : services);
    ctx.log.info(
      waitOnlyFor
        ? `Starting ${waitOnlyFor.join(", ")} alone (${composeName(p.cli)})`
        : recreate
        ? `Recreating ${recreate.join(", ")} (${composeName(p.cli)})`
        : `Starting the stack "${p.target.project}": ${all.join(", ")} (${composeName(p.cli)})`,
    );
    await up(ctx, p, upArgs(p.cli, recreate ?? [], recreate !== undefined));
    const baseline = await baselineOf(ctx, p.target.project);
    const w = await waitForStack(ctx, p.target.project, names, opts, baseline);
    const current = w.containers.filter((c) => names.includes(c.service) && !c.oneoff);
    return {
      project: p.target.project,
      compose: composeName(p.cli),
      services: current.map(toStatus),
      readiness: w.readiness,
      urls: w.readiness.filter((r) => r.ok).map((r) => r.url),
      waitedMs: w.waitedMs,
    };
  } finally {
    await p.cleanup();
  }
}

/**
 * Starts the stack with `up -d --no-build` (plus `--pull never` on Compose v2) and waits until it
 * is healthy and ready (see `waitForStack`). Checks first that every image a started service runs
 * is in the engine, since nothing can be pulled. Throws `stackError` (exit 6) on failure.
 */
export async function startStack(ctx: Context, opts: StackOptions): Promise<StackResult> {
  return await startAndWait(ctx, opts);
}

/**
 * Recreates only `services` (for upgrades): `up -d --no-build --no-deps <services>`, then waits
 * for the whole stack as `startStack` does.
 */
export async function recreateServices(
  ctx: Context,
  opts: StackOptions,
  services: string[],
): Promise<StackResult> {
  if (services.length === 0) return await startAndWait(ctx, opts);
  return await startAndWait(ctx, opts, services);
}

/**
 * Starts only `services` (`up -d --no-build --no-deps <services>`: created, or recreated when
 * their image or settings changed) and waits until they alone are up, healthy where they have a
 * healthcheck; every other service is left as it is. Before a database restore or backup:
 * postgres alone, so that no gateway starts on a database about to be replaced.
 */
export async function startServices(
  ctx: Context,
  opts: StackOptions,
  services: string[],
): Promise<StackResult> {
  return await startAndWait(ctx, opts, services, services);
}

/**
 * Stops (`docker stop`, containers kept) every running container of the project except those of
 * the `keep` services; returns the containers stopped, for `startContainers` to start them again.
 */
export async function stopServicesExcept(
  ctx: Context,
  project: string,
  keep: string[],
): Promise<ContainerState[]> {
  const stop = (await listContainers(ctx, project)).filter((c) =>
    !c.oneoff && c.status === "running" && !keep.includes(c.service)
  );
  if (stop.length === 0) return [];
  ctx.log.info(`Stopping ${stop.map((c) => c.name).join(", ")}`);
  const r = await ctx.docker.run(["stop", ...stop.map((c) => c.id)]);
  throwIfAborted(ctx.signal);
  if (r.code !== 0) {
    throw stackError(
      `Cannot stop ${stop.map((c) => c.name).join(", ")}: docker stop failed`,
      undefined,
      tail(r.stderr),
    );
  }
  return stop;
}

/**
 * `docker start` of containers stopped by `stopServicesExcept` (after a failure: the host as it
 * was). Not abortable (cleanup); returns the names that did not start.
 */
export async function startContainers(ctx: Context, cs: ContainerState[]): Promise<string[]> {
  if (cs.length === 0) return [];
  const r = await ctx.docker.run(["start", ...cs.map((c) => c.id)], { signal: null });
  if (r.code === 0) return [];
  const failed: string[] = [];
  for (const c of cs) {
    const i = await ctx.docker.run(["inspect", "--format", "{{.State.Running}}", c.id], {
      signal: null,
    });
    if (i.stdout.trim() !== "true") failed.push(c.name);
  }
  return failed;
}

/**
 * The project's services and their health, from the containers alone: starts nothing and needs
 * no compose file.
 */
export async function stackStatus(
  ctx: Context,
  opts: Pick<StackOptions, "project">,
): Promise<StackStatus> {
  const project = opts.project ?? DEFAULT_PROJECT;
  const cs = (await listContainers(ctx, project)).filter((c) => !c.oneoff);
  const running = cs.length > 0 && cs.every((c) => c.status === "running");
  const healthy = running && cs.every((c) => c.health === undefined || c.health === "healthy");
  return { project, services: cs.map(toStatus), healthy, running };
}

/**
 * Stops and removes the stack's containers with `down`. Never removes volumes (no `-v`) or
 * images: Cortex's database lives in a volume.
 */
export async function stopStack(ctx: Context, opts: StackOptions): Promise<{ removed: string[] }> {
  const p = await prepare(ctx, opts);
  try {
    const before = await listContainers(ctx, p.target.project);
    const r = await runCompose(ctx, p, ["down"]);
    throwIfAborted(ctx.signal);
    if (r.code !== 0) {
      throw stackError(
        `Cannot stop the stack "${p.target.project}": \`${p.cli.cmd.join(" ")} down\` failed`,
        undefined,
        redactSecrets(tail(r.stderr || r.stdout)),
      );
    }
    const after = new Set((await listContainers(ctx, p.target.project)).map((c) => c.id));
    return { removed: before.filter((c) => !after.has(c.id)).map((c) => c.name) };
  } finally {
    await p.cleanup();
  }
}
