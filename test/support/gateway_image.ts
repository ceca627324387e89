/**
 * A stand-in for Cortex's gateway image where cortex-install's database and model-registration work
 * depends on it (issue 9), built without any pull: busybox-static (`nc -ll -e` serves one shell
 * handler per connection), Debian's `psql` and the libraries `ldd` names, and the scripts in
 * standin/gateway/. The database work happens in the real PostgreSQL (test/support/postgres_image.ts):
 * the stand-in's JSON is parsed and built by PostgreSQL's json functions, so the shell only frames
 * HTTP. Which Cortex behaviour each part stands for is said in each script (facts §3, §5, §6, §8).
 *
 * Why this shape: busybox `httpd` runs CGI only under /cgi-bin/ (Cortex's routes are /health,
 * /auth/login, /admin/bundles/...), while `nc -ll -e` hands any path to our handler; psql is
 * the real client of the real server (and is needed anyway to apply the schema); no second
 * runtime (Deno, Python) is copied into the image, which stays ~15 MB and imports in well under a
 * second.
 *
 * Two flavours, two images (an upgrade changes the gateway's image ID, as Cortex's does):
 * - `0.1`: schema by create_all (no alembic_version); refuses to start on a 0.2 schema;
 * - `0.2`: Alembic-like: stamps 0001_baseline on a 0.1 schema, applies the irreversible
 *   0002_engine_spec, refuses a revision it does not know; serves the bundles API.
 *
 * Environment (as Cortex's compose gives the gateway): DATABASE_URL
 * (`postgresql+asyncpg://user:password@127.0.0.1:port/db`), ADMIN_BOOTSTRAP_USERNAME,
 * ADMIN_BOOTSTRAP_PASSWORD, ADMIN_BOOTSTRAP_ORG, SESSION_SECRET, SESSION_TTL_HOURS,
 * SESSION_COOKIE_SECURE, CORTEX_TRANSFER_DIRS, CORTEX_MODELS_DIR. Stand-in knobs: STANDIN_PORT
 * (default 8084), STANDIN_HOST (default 127.0.0.1), STANDIN_FAIL (`never-healthy` | `crash`, both
 * after the migration), STANDIN_RECORD (JSON lines of the requests received, default
 * /var/log/standin/requests.jsonl), STANDIN_JOB_DELAY_MS (default 300).
 * The image has a `curl` that understands `curl -fsS URL`, so Cortex's compose healthcheck
 * (`curl -fsS http://127.0.0.1:8084/health`) works against it unchanged.
 */
import { runDocker } from "../../src/docker.ts";
import { freePort } from "./release_fixture.ts";
import { RootFs } from "./rootfs.ts";

const PSQL = "/usr/lib/postgresql/15/bin/psql";
const SRC = new URL("./standin/gateway/", import.meta.url).pathname;

export type GatewayFlavour = "0.1" | "0.2";

export interface GatewayImage {
  flavour: GatewayFlavour;
  ref: string;
  id: string;
  label: string;
  importMs: number;
  sizeBytes: number;
}

/** `curl -fsS URL` (all Cortex's healthchecks use) on busybox wget. */
const CURL_SHIM = `#!/bin/sh
# curl stand-in: the last argument is the URL; -f semantics (non-zero exit on HTTP errors).
for a in "$@"; do url="$a"; done
exec wget -q -O - "$url"
`;

const cache = new Map<string, Promise<GatewayImage>>();

/**
 * The stand-in image of a flavour for this process, built on first use (the two flavours share
 * one label, so `removeTestImages(label)` removes both).
 */
export function gatewayImage(flavour: GatewayFlavour, label?: string): Promise<GatewayImage> {
  const key = `${flavour} ${label ?? ""}`;
  let p = cache.get(key);
  if (!p) {
    p = buildGatewayImage({ flavour, label: label ?? processLabel });
    cache.set(key, p);
  }
  return p;
}

const processLabel = `gw${crypto.randomUUID().slice(0, 8)}`;

/** The label of the images `gatewayImage()` builds in this process. */
export function gatewayLabel(): string {
  return processLabel;
}

/** Builds the stand-in image of one flavour (uncached). */
export async function buildGatewayImage(o: {
  flavour: GatewayFlavour;
  ref?: string;
  label?: string;
  /**
   * Environment baked into the image (e.g. STANDIN_FAIL=never-healthy): a release whose gateway
   * behaves so whatever compose gives it, as a broken build of Cortex's image would.
   */
  env?: Record<string, string>;
}): Promise<GatewayImage> {
  const label = o.label ?? `gw${crypto.randomUUID().slice(0, 8)}`;
  const version = o.flavour === "0.1" ? "0.1.1" : "0.2.0";
  const ref = o.ref ?? `cit-gw-${label}/cortex-gateway:${version}`;
  const fs = await RootFs.create([{ name: "cortex", uid: 1000, home: "/app" }]);
  try {
    fs.include(PSQL);
    await fs.includeLibrariesOf([PSQL]);
    for (const f of ["entry.sh", "handler.sh", "job.sh", "lib.sh"]) {
      await fs.write(`/gw/${f}`, await Deno.readFile(`${SRC}${f}`), 0o755);
    }
    for await (const e of Deno.readDir(`${SRC}sql`)) {
      await fs.write(`/gw/sql/${e.name}`, await Deno.readFile(`${SRC}sql/${e.name}`));
    }
    await fs.write("/usr/bin/curl", CURL_SHIM, 0o755);
    for (
      const d of ["/var/cortex/models", "/var/cortex/exports", "/run/standin", "/var/log/standin"]
    ) {
      await Deno.mkdir(`${fs.dir}${d}`, { recursive: true });
    }
    await fs.write("/cit-id", `${ref} ${crypto.randomUUID()}\n`);
    const { id, importMs } = await fs.import(ref, [
      `LABEL cit=${label}`,
      `LABEL org.opencontainers.image.title=${ref}`,
      "ENV PATH=/usr/lib/postgresql/15/bin:/usr/bin:/bin",
      `ENV STANDIN_SCHEMA=${o.flavour}`,
      `ENV CORTEX_VERSION=${version}`,
      // Exported so psql's \getenv always finds them (an unset one would stay a literal).
      "ENV ADMIN_BOOTSTRAP_USERNAME= ADMIN_BOOTSTRAP_PASSWORD= ADMIN_BOOTSTRAP_ORG= " +
      "SESSION_SECRET= SESSION_TTL_HOURS=8 SESSION_COOKIE_SECURE=false",
      ...Object.entries(o.env ?? {}).map(([k, v]) => `ENV ${k}=${v}`),
      'ENTRYPOINT ["/gw/entry.sh"]',
    ]);
    const size = await runDocker(["image", "inspect", "--format", "{{.Size}}", id]);
    return { flavour: o.flavour, ref, id, label, importMs, sizeBytes: Number(size.stdout.trim()) };
  } finally {
    await fs.remove();
  }
}

export interface StartGatewayOptions {
  image: string;
  /** DATABASE_URL, e.g. from `PgContainer.url` (any `postgresql://` URL; `+asyncpg` accepted). */
  databaseUrl: string;
  port?: number;
  adminUser?: string;
  adminPassword?: string;
  /** Extra environment (CORTEX_TRANSFER_DIRS, STANDIN_FAIL, SESSION_SECRET, ...). */
  env?: Record<string, string>;
  /** `-v` mounts, e.g. `["/tmp/x:/host/media/x:ro"]`. */
  volumes?: string[];
  /** Host dir where the request record lands (mounted at /var/log/standin); default a temp dir. */
  recordDir?: string;
  name?: string;
}

export interface GatewayContainer {
  id: string;
  name: string;
  port: number;
  /** `http://127.0.0.1:<port>` */
  url: string;
  /** Host path of the JSON-lines request record. */
  recordFile: string;
  /** The requests the stand-in received so far, parsed. */
  requests(): Promise<RecordedRequest[]>;
  /** Polls /health until it answers {"status":"ok"}; throws (with the log) when it exits first. */
  waitHealthy(timeoutMs?: number): Promise<void>;
  /**
   * Polls /health until the server answers at all (it listens only after its start-up, migration
   * included); returns the HTTP status and body. Throws when it exits first.
   */
  waitAnswer(timeoutMs?: number): Promise<{ status: number; body: string }>;
  /** Waits for the container to exit; returns its exit code (undefined on timeout). */
  waitExit(timeoutMs?: number): Promise<number | undefined>;
  logs(): Promise<string>;
  remove(): Promise<void>;
}

export interface RecordedRequest {
  at: string;
  method: string;
  path: string;
  query: string;
  /** Whether a cortex_session cookie came with it. */
  session: boolean;
  /** The JSON body (a login's password replaced by `password_given`). */
  // deno-lint-ignore no-explicit-any
  body: any;
}

/** `docker run -d --network host` of a stand-in gateway on a loopback port. */
export async function startGateway(o: StartGatewayOptions): Promise<GatewayContainer> {
  const port = o.port ?? freePort();
  const name = o.name ?? `cit-gw-${crypto.randomUUID().slice(0, 8)}`;
  const recordDir = o.recordDir ?? await Deno.makeTempDir({ prefix: "cit-gw-record-" });
  const env: Record<string, string> = {
    DATABASE_URL: o.databaseUrl.replace(/^postgresql:/, "postgresql+asyncpg:"),
    STANDIN_PORT: String(port),
    ...(o.adminUser ? { ADMIN_BOOTSTRAP_USERNAME: o.adminUser } : {}),
    ...o.env,
  };
  // The password goes through the docker CLI's environment (`-e NAME`), never its argv.
  const secretEnv: Record<string, string> = {};
  if (o.adminPassword) secretEnv.ADMIN_BOOTSTRAP_PASSWORD = o.adminPassword;
  const r = await runDocker([
    "run",
    "-d",
    "--name",
    name,
    "--network",
    "host",
    ...Object.entries(env).flatMap(([k, v]) => ["-e", `${k}=${v}`]),
    ...Object.keys(secretEnv).flatMap((k) => ["-e", k]),
    "-v",
    `${recordDir}:/var/log/standin`,
    ...(o.volumes ?? []).flatMap((v) => ["-v", v]),
    o.image,
  ], { env: { ...Deno.env.toObject(), ...secretEnv } });
  if (r.code !== 0) throw new Error(`docker run ${o.image} failed: ${r.stderr}`);
  const id = r.stdout.trim();
  const url = `http://127.0.0.1:${port}`;
  const recordFile = `${recordDir}/requests.jsonl`;
  const logs = async () => {
    const l = await runDocker(["logs", id]);
    return l.stdout + l.stderr;
  };
  const running = async () =>
    (await runDocker(["inspect", "--format", "{{.State.Running}}", id])).stdout.trim() === "true";
  return {
    id,
    name,
    port,
    url,
    recordFile,
    logs,
    requests: async () => {
      const text = await Deno.readTextFile(recordFile).catch(() => "");
      return text.split("\n").filter((l) => l.trim()).map((l) => {
        const r = JSON.parse(l);
        if (typeof r.body_b64 === "string") {
          const raw = new TextDecoder().decode(
            Uint8Array.from(atob(r.body_b64), (c) => c.charCodeAt(0)),
          );
          try {
            r.body = JSON.parse(raw);
          } catch {
            r.body = raw;
          }
          delete r.body_b64;
        }
        r.body ??= null;
        return r as RecordedRequest;
      });
    },
    waitHealthy: async (timeoutMs = 60_000) => {
      const until = Date.now() + timeoutMs;
      while (Date.now() < until) {
        try {
          const res = await fetch(`${url}/health`);
          const body = await res.text();
          if (res.ok && JSON.parse(body).status === "ok") return;
        } catch {
          // not listening yet
        }
        if (!await running()) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error(`gateway stand-in ${name} did not become healthy:\n${await logs()}`);
    },
    waitAnswer: async (timeoutMs = 60_000) => {
      const until = Date.now() + timeoutMs;
      while (Date.now() < until) {
        try {
          const res = await fetch(`${url}/health`);
          return { status: res.status, body: await res.text() };
        } catch {
          // not listening yet
        }
        if (!await running()) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error(`gateway stand-in ${name} never answered:\n${await logs()}`);
    },
    waitExit: async (timeoutMs = 60_000) => {
      const until = Date.now() + timeoutMs;
      while (Date.now() < until) {
        const st = await runDocker([
          "inspect",
          "--format",
          "{{.State.Running}} {{.State.ExitCode}}",
          id,
        ]);
        const [run, code] = st.stdout.trim().split(" ");
        if (run === "false") return Number(code);
        await new Promise((r) => setTimeout(r, 100));
      }
      return undefined;
    },
    remove: async () => {
      await runDocker(["rm", "-f", "-v", id]);
      if (!o.recordDir) await Deno.remove(recordDir, { recursive: true }).catch(() => {});
    },
  };
}
