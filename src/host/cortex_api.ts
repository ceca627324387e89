/**
 * A client for the part of Cortex 0.2's HTTP API that registers a bundle's models (issue 9 §5;
 * facts §6): `POST /auth/login` (cookie `cortex_session`), `GET /admin/bundles/scan`,
 * `POST /admin/bundles/import`, `GET /admin/bundles/status` (one job at a time).
 *
 * cortex-install has already verified and seeded the model files, and loaded the images, so the
 * import asks for `copy_files=false`, `load_images=false`, `verify_checksums=false`: Cortex only
 * creates the model records, by the chosen conflict policy.
 *
 * The gateway reads the bundle at ITS path: `bundleContainerPath` maps the host path through the
 * gateway container's mounts and checks it lies under CORTEX_TRANSFER_DIRS (facts §6:
 * /media/x -> /host/media/x).
 *
 * No password or session cookie ever appears in a message, an error or `JSON.stringify` of a
 * result. `fetch`, the clock and `sleep` are injectable; every wait is bounded and abortable.
 */
import { z } from "zod";
import { ExitCode, InstallError, InterruptedError } from "../errors.ts";
import type { DockerRunner } from "../docker.ts";

/** What `--model-conflict` accepts (facts §6): what to do when a served name is registered. */
export const MODEL_CONFLICT_POLICIES = ["skip", "rename", "replace", "error"] as const;
export type ModelConflict = typeof MODEL_CONFLICT_POLICIES[number];

export interface CortexApiOptions {
  /** The gateway, e.g. `http://127.0.0.1:8084`. */
  baseUrl: string;
  fetch?: typeof fetch;
  signal?: AbortSignal;
  /** Milliseconds clock (default `Date.now`). */
  now?: () => number;
  /** Waits `ms` (default a timer; rejects when `signal` aborts). */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  /** Limit of one HTTP request (default 30 s). */
  requestTimeoutMs?: number;
}

/** A logged-in session. Its cookie never leaves this object (`toJSON` leaves it out). */
export class CortexSession {
  readonly #cookie: string;
  constructor(cookie: string, readonly user: { username?: string; role?: string }) {
    this.#cookie = cookie;
  }
  /** The `Cookie` header value. */
  header(): string {
    return this.#cookie;
  }
  toJSON(): unknown {
    return { user: this.user };
  }
}

function apiError(msg: string, hint?: string, code: ExitCode = ExitCode.Stack): InstallError {
  return new InstallError("models", msg, code, hint);
}

const ErrorBody = z.object({
  error: z.object({ code: z.string().optional(), message: z.string().optional() }).passthrough(),
}).passthrough();

/** `401 invalid_credentials: Invalid username or password` from Cortex's error shapes. */
function describeError(status: number, text: string): string {
  let detail = "";
  try {
    const j = JSON.parse(text);
    const e = ErrorBody.safeParse(j);
    if (e.success) {
      detail = [e.data.error.code, e.data.error.message].filter(Boolean).join(": ");
    } else if (typeof j?.detail === "string") {
      detail = j.detail; // FastAPI's own errors
    } else if (Array.isArray(j?.detail)) {
      detail = j.detail.map((d: { msg?: string }) => d?.msg).filter(Boolean).join("; ");
    }
  } catch {
    detail = text.slice(0, 200).replace(/\s+/g, " ").trim();
  }
  return detail ? `${status} ${detail}` : `${status}`;
}

const defaultSleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    if (signal?.aborted) return reject(new InterruptedError());
    const id = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(id);
      reject(new InterruptedError());
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });

async function request(
  o: CortexApiOptions,
  method: "GET" | "POST",
  path: string,
  what: string,
  session?: CortexSession,
  body?: unknown,
): Promise<{ status: number; text: string; res: Response }> {
  const f = o.fetch ?? fetch;
  const timeout = AbortSignal.timeout(o.requestTimeoutMs ?? 30_000);
  const signal = o.signal ? AbortSignal.any([o.signal, timeout]) : timeout;
  const headers: Record<string, string> = { accept: "application/json" };
  if (body !== undefined) headers["content-type"] = "application/json";
  if (session) headers.cookie = session.header();
  let res: Response;
  try {
    res = await f(new URL(path, o.baseUrl).href, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      redirect: "manual",
      signal,
    });
  } catch (e) {
    if (o.signal?.aborted) throw new InterruptedError();
    const why = timeout.aborted ? `no answer in ${(o.requestTimeoutMs ?? 30_000) / 1000} s` : (
      e instanceof Error ? e.message : String(e)
    );
    throw apiError(
      `Cannot ${what}: the Cortex gateway at ${o.baseUrl} did not answer (${why})`,
      "Is the stack healthy? `cortex-install status` shows it.",
    );
  }
  const text = await res.text();
  return { status: res.status, text, res };
}

/**
 * `POST /auth/login`; returns the session holding the `cortex_session` cookie. A refused login
 * throws naming the user (never the password).
 */
export async function login(
  o: CortexApiOptions,
  username: string,
  password: string,
): Promise<CortexSession> {
  const what = `log in to Cortex as "${username}"`;
  const r = await request(o, "POST", "/auth/login", what, undefined, { username, password });
  if (r.status !== 200) {
    throw apiError(
      `Cannot ${what}: ${describeError(r.status, r.text)}`,
      r.status === 401
        ? "The admin's password changed since it was set up? Give the current one (--admin-password-file)."
        : undefined,
    );
  }
  const cookie = r.res.headers.getSetCookie().map((c) => c.split(";")[0].trim())
    .find((c) => c.startsWith("cortex_session="));
  if (!cookie) {
    throw apiError(`Cannot ${what}: Cortex accepted the login but set no cortex_session cookie`);
  }
  let user: { username?: string; role?: string } = { username };
  try {
    const j = JSON.parse(r.text);
    if (j?.user && typeof j.user === "object") {
      user = { username: j.user.username ?? username, role: j.user.role };
    }
  } catch {
    // the cookie is what matters
  }
  return new CortexSession(cookie, user);
}

const ScanModel = z.object({
  served_model_name: z.string(),
  name: z.string().nullish(),
  files_present_on_host: z.boolean().nullish(),
  already_registered: z.boolean().nullish(),
}).passthrough();

const ScanResponse = z.object({
  models: z.array(ScanModel).default([]),
  checksums: z.object({
    verified: z.boolean().optional(),
    ok: z.number().optional(),
    bad: z.number().optional(),
    missing: z.number().optional(),
  }).passthrough().nullish(),
}).passthrough();

/** What the gateway sees in a bundle (the fields cortex-install uses; the rest is kept). */
export type ScanResult = z.infer<typeof ScanResponse>;

/** `GET /admin/bundles/scan?path=&verify=` at the gateway's path of the bundle. */
export async function scanBundle(
  o: CortexApiOptions,
  session: CortexSession,
  containerPath: string,
  verify = false,
): Promise<ScanResult> {
  const q = new URLSearchParams({ path: containerPath, verify: String(verify) });
  const what = `scan the bundle at "${containerPath}" in Cortex`;
  const r = await request(o, "GET", `/admin/bundles/scan?${q}`, what, session);
  if (r.status !== 200) {
    throw apiError(
      `Cannot ${what}: ${describeError(r.status, r.text)}`,
      r.status === 404
        ? "A drive mounted under /media, /mnt or /run/media after the gateway started is not visible in it (bind mounts do not follow new mounts): restart the gateway, then run again."
        : undefined,
    );
  }
  return parseJson(ScanResponse, r.text, what);
}

function parseJson<T extends z.ZodType>(schema: T, text: string, what: string): z.infer<T> {
  let j: unknown;
  try {
    j = JSON.parse(text);
  } catch {
    throw apiError(`Cannot ${what}: Cortex answered something that is not JSON`);
  }
  const p = schema.safeParse(j);
  if (!p.success) {
    throw apiError(
      `Cannot ${what}: Cortex's answer has an unexpected shape (${p.error.issues[0]?.message})`,
    );
  }
  return p.data;
}

const ModelArtifact = z.object({
  served_model_name: z.string().optional(),
  source_served_model_name: z.string().optional(),
  name: z.string().optional(),
  type: z.string().optional(),
  kind: z.string().optional(),
  status: z.string(),
  model_id: z.number().nullish(),
}).passthrough();

const Job = z.object({
  id: z.union([z.string(), z.number()]).nullish(),
  status: z.string(),
  error: z.string().nullish(),
  // Facts §6 name the artifact statuses, not the container: `{images:[…], models:[…]}` or a flat
  // list whose entries say their type. Both are read.
  artifacts: z.union([
    z.object({ models: z.array(ModelArtifact).optional() }).passthrough(),
    z.array(ModelArtifact),
  ]).nullish(),
}).passthrough();

/** A bundles job as `GET /admin/bundles/status` returns it. */
export type BundleJob = z.infer<typeof Job>;

const StatusResponse = z.object({ job: Job.nullable() }).passthrough();

/** Statuses after which a job changes no more (facts §6). */
export const JOB_DONE = ["completed", "failed", "cancelled"] as const;

export interface ImportRequest {
  /** The gateway's path of the bundle. */
  path: string;
  conflict: ModelConflict;
  /** Only these models (default: every model of the bundle). */
  servedModelNames?: string[];
}

/**
 * `POST /admin/bundles/import` asking only for model records: `load_images=false`,
 * `import_models=true`, `copy_files=false`, `verify_checksums=false` (cortex-install loaded and
 * verified everything already). Returns the job. A job already running is a 409, thrown as is:
 * `registerModels` waits for it and tries once more.
 */
export async function startImport(
  o: CortexApiOptions,
  session: CortexSession,
  req: ImportRequest,
): Promise<BundleJob> {
  const body = {
    path: req.path,
    load_images: false,
    import_models: true,
    copy_files: false,
    conflict: req.conflict,
    verify_checksums: false,
    ...(req.servedModelNames ? { served_model_names: req.servedModelNames } : {}),
  };
  const what = `register the bundle's models in Cortex`;
  const r = await request(o, "POST", "/admin/bundles/import", what, session, body);
  if (r.status === 409) throw new JobRunningError(describeError(r.status, r.text));
  if (r.status !== 200 && r.status !== 201 && r.status !== 202) {
    throw apiError(`Cannot ${what}: ${describeError(r.status, r.text)}`);
  }
  // The answer is the job itself or {"job": …}.
  const j = parseJson(z.unknown(), r.text, what) as { job?: unknown } | null;
  return parseJson(Job, JSON.stringify(j?.job ?? j), what);
}

/** Cortex runs one bundles job at a time and another one is running. */
export class JobRunningError extends InstallError {
  constructor(detail: string) {
    super(
      "models",
      `Cannot register the bundle's models in Cortex: another bundles job is running (${detail})`,
      ExitCode.Stack,
      "Wait for the Admin UI's transfer job to finish, then run again.",
    );
  }
}

/** `GET /admin/bundles/status`: the current (or last) job, or null. */
export async function getJob(
  o: CortexApiOptions,
  session: CortexSession,
): Promise<BundleJob | null> {
  const what = "read the bundles job status from Cortex";
  const r = await request(o, "GET", "/admin/bundles/status", what, session);
  if (r.status !== 200) throw apiError(`Cannot ${what}: ${describeError(r.status, r.text)}`);
  return parseJson(StatusResponse, r.text, what).job;
}

export interface WaitOptions {
  /** Give up after this long (default 10 minutes). */
  timeoutMs?: number;
  /** Between polls (default 500 ms). */
  pollMs?: number;
  /** Wait for this job; a different one in the status is an error. */
  jobId?: string | number | null;
  /** Called with each status read (progress). */
  onStatus?: (job: BundleJob) => void;
}

/**
 * Polls `status` until the job is completed, failed or cancelled (returned as is, whatever its
 * status); throws when the time is up (the job may still be running: said so), when a different
 * job shows up, or on abort (InterruptedError). The number of polls is bounded by
 * `timeoutMs / pollMs + 1`.
 */
export async function waitForJob(
  o: CortexApiOptions,
  session: CortexSession,
  w: WaitOptions = {},
): Promise<BundleJob> {
  const now = o.now ?? Date.now;
  const sleep = o.sleep ?? defaultSleep;
  const timeoutMs = w.timeoutMs ?? 600_000;
  const pollMs = w.pollMs ?? 500;
  const until = now() + timeoutMs;
  while (true) {
    if (o.signal?.aborted) throw new InterruptedError();
    const job = await getJob(o, session);
    if (!job) throw apiError("Cannot register the bundle's models: Cortex reports no bundles job");
    if (w.jobId != null && job.id != null && String(job.id) !== String(w.jobId)) {
      throw apiError(
        `Cannot register the bundle's models: Cortex now reports another job (${job.id}) than ours (${w.jobId})`,
        "Someone started a transfer in the Admin UI meanwhile; run again when it is done.",
      );
    }
    w.onStatus?.(job);
    if ((JOB_DONE as readonly string[]).includes(job.status)) return job;
    if (now() >= until) {
      throw apiError(
        `Cannot register the bundle's models: Cortex's import job is still ${job.status} after ${
          Math.round(timeoutMs / 1000)
        } s`,
        "It may still finish: look at Transfer in the Admin UI, or run again later (registered models are skipped).",
      );
    }
    await sleep(Math.min(pollMs, Math.max(0, until - now())), o.signal);
  }
}

/** What happened to one model record. */
export interface ModelOutcome {
  /** The served name it is registered under (a `rename` gives `name-2`…). */
  servedModelName: string;
  /** The bundle's served name. */
  source: string;
  /** created | skipped | replaced | skipped_running (facts §6), or what Cortex said. */
  status: string;
  modelId?: number;
}

/** The model artifacts of a finished job, whichever artifact shape Cortex used. */
export function modelOutcomes(job: BundleJob): ModelOutcome[] {
  const a = job.artifacts;
  const list = Array.isArray(a)
    ? a.filter((x) => (x.type ?? x.kind ?? "model") === "model")
    : a?.models ?? [];
  return list.map((m) => {
    const name = m.served_model_name ?? m.name ?? "";
    return {
      servedModelName: name,
      source: m.source_served_model_name ?? name,
      status: m.status,
      ...(m.model_id != null ? { modelId: m.model_id } : {}),
    };
  });
}

export interface RegisterOptions extends WaitOptions {
  username: string;
  password: string;
  /** The gateway's path of the bundle (`bundleContainerPath`). */
  containerPath: string;
  conflict: ModelConflict;
  servedModelNames?: string[];
}

export interface RegisterResult {
  models: ModelOutcome[];
  jobId?: string | number | null;
  /** Models the scan found in the bundle. */
  scanned: number;
}

/**
 * The whole registration: login, scan (the bundle must be visible to the gateway), import with
 * `copy_files=false`/`load_images=false` and the conflict policy, then poll until the job ends.
 * Returns each model's outcome. A failed or cancelled job throws with Cortex's error (e.g. the
 * `error` policy meeting a registered name). A bundle without model records returns no models and
 * starts no job.
 */
export async function registerModels(
  o: CortexApiOptions,
  r: RegisterOptions,
): Promise<RegisterResult> {
  const session = await login(o, r.username, r.password);
  const scan = await scanBundle(o, session, r.containerPath, false);
  const wanted = r.servedModelNames
    ? scan.models.filter((m) => r.servedModelNames!.includes(m.served_model_name))
    : scan.models;
  if (wanted.length === 0) return { models: [], scanned: scan.models.length };
  const req = {
    path: r.containerPath,
    conflict: r.conflict,
    servedModelNames: r.servedModelNames,
  };
  const wait: WaitOptions = { timeoutMs: r.timeoutMs, pollMs: r.pollMs, onStatus: r.onStatus };
  let job: BundleJob;
  try {
    job = await startImport(o, session, req);
  } catch (e) {
    if (!(e instanceof JobRunningError)) throw e;
    // Someone else's job (an Admin-UI transfer): wait for it, then try once more.
    await waitForJob(o, session, wait);
    job = await startImport(o, session, req);
  }
  const done = await waitForJob(o, session, { ...wait, jobId: job.id });
  if (done.status !== "completed") {
    throw apiError(
      `Cannot register the bundle's models in Cortex: the import job ${done.status}${
        done.error ? `: ${done.error}` : ""
      }`,
      r.conflict === "error"
        ? "A model of the bundle is already registered; --model-conflict skip, rename or replace decides what to do."
        : undefined,
    );
  }
  return { models: modelOutcomes(done), jobId: done.id, scanned: scan.models.length };
}

/** A mount of the gateway container (`docker inspect` `.Mounts`). */
export interface Mount {
  /** Host path. */
  source: string;
  /** Path in the container. */
  destination: string;
}

/** What the gateway sees of the host: its mounts and CORTEX_TRANSFER_DIRS. */
export interface GatewayView {
  mounts: Mount[];
  transferDirs: string[];
}

/**
 * Cortex's transfer dirs when CORTEX_TRANSFER_DIRS is not set (inferred from 0.2's compose, which
 * always sets it; the exports dir is the UI's default destination).
 */
export const DEFAULT_TRANSFER_DIRS = ["/var/cortex/exports"];

/** The gateway's view from `docker inspect` of its container (`.Mounts`, `.Config.Env`). Pure. */
export function gatewayViewFromInspect(inspect: unknown): GatewayView {
  // deno-lint-ignore no-explicit-any
  const c = (Array.isArray(inspect) ? inspect[0] : inspect) as any;
  const mounts: Mount[] = (c?.Mounts ?? [])
    .filter((m: { Source?: string; Destination?: string }) => m?.Source && m?.Destination)
    .map((m: { Source: string; Destination: string }) => ({
      source: m.Source,
      destination: m.Destination,
    }));
  const env: string[] = c?.Config?.Env ?? [];
  const line = env.findLast((l) => l.startsWith("CORTEX_TRANSFER_DIRS="));
  const transferDirs = line === undefined
    ? DEFAULT_TRANSFER_DIRS
    : line.slice("CORTEX_TRANSFER_DIRS=".length).split(",").map((s) => s.trim()).filter(Boolean);
  return { mounts, transferDirs };
}

/** `gatewayViewFromInspect` of a running container. */
export async function gatewayViewFromContainer(
  docker: DockerRunner,
  container: string,
  signal?: AbortSignal,
): Promise<GatewayView> {
  const r = await docker.run(["inspect", container], { signal });
  if (r.code !== 0) {
    throw apiError(
      `Cannot read the gateway container "${container}": docker inspect failed`,
      undefined,
      ExitCode.Docker,
    );
  }
  return gatewayViewFromInspect(JSON.parse(r.stdout));
}

/** `/a/b/../c/` -> `/a/c` (no filesystem access). */
export function normalizePath(p: string): string {
  const out: string[] = [];
  for (const part of p.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") out.pop();
    else out.push(part);
  }
  return "/" + out.join("/");
}

/** Whether `path` is `dir` or inside it (path-segment aware: /mediax is not in /media). */
function within(path: string, dir: string): boolean {
  const d = normalizePath(dir);
  return d === "/" || path === d || path.startsWith(d + "/");
}

/**
 * The gateway's path of a bundle at `hostPath` (absolute; resolve symlinks first, e.g. with
 * `Deno.realPath`): through the mount whose host side holds it most closely, then checked to lie
 * under a transfer dir (facts §6: /media/x -> /host/media/x). Throws a preflight error (exit 3)
 * naming the transfer dirs, on the host and in the gateway, when the bundle is outside all of them.
 */
export function bundleContainerPath(hostPath: string, view: GatewayView): string {
  const host = normalizePath(hostPath);
  const transfer = view.transferDirs.map(normalizePath);
  const mount = view.mounts
    .filter((m) => within(host, m.source))
    .sort((a, b) => normalizePath(b.source).length - normalizePath(a.source).length)[0];
  const inside = mount
    ? normalizePath(
      normalizePath(mount.destination) + "/" + host.slice(normalizePath(mount.source).length),
    )
    : undefined;
  if (inside && transfer.some((d) => within(inside, d))) return inside;
  // Host folders that reach a transfer dir, for the message.
  const hostDirs = view.mounts
    .filter((m) => transfer.some((d) => within(normalizePath(m.destination), d)))
    .map((m) => m.source);
  throw apiError(
    `Cannot register the bundle's models: "${host}" is outside every transfer dir of the Cortex gateway (${
      transfer.join(", ") || "none"
    }${hostDirs.length ? `; on this host: ${hostDirs.join(", ")}` : ""})`,
    hostDirs.length
      ? `Move or copy the bundle under ${
        hostDirs.join(", ")
      } and run again; or import it from the Admin UI.`
      : "The gateway mounts no transfer dir; check CORTEX_TRANSFER_DIRS and the gateway's volumes.",
    ExitCode.Preflight,
  );
}
