/**
 * A 0.1-shaped Cortex host for the database journeys (test/e2e/db_*_test.ts), made of real parts:
 * - postgres: Debian's PostgreSQL 15 in a test image (postgres_image.ts), tagged as the stack's
 *   `<prefix>/postgres:16`, its data in a named volume as Cortex's compose keeps it;
 * - gateway: the stand-in (gateway_image.ts) tagged as `<prefix>/cortex-gateway:latest`, as 0.1's
 *   compose runs it; each release's bundle ships its own build (another image ID, same tag):
 *   `0.1` (create_all; refuses a 0.2 schema), `0.2` (migrates to Alembic 0002, one-way: stands for
 *   "the new gateway changes the schema irreversibly"), `0.2-broken` (migrates, then never healthy);
 * - bundles built with real `docker save` (one save per image per test file, hard-linked into
 *   each bundle): script bundles (`manifest.json`, flat tars) and Admin-UI exports (`images/`,
 *   `db/cortex.sql`), both with checksums.sha256;
 * - a Cortex dir whose compose file runs both on host networking and random loopback ports, with
 *   POSTGRES_USER/DB that are not `cortex` (nothing may assume them), and a release manifest whose
 *   readiness URL is the gateway's /health.
 * Every name carries a unique label; `cleanup()` removes the containers, the volume and the dir.
 */
import { mergeArgs } from "./args.ts";
import { runDocker } from "../../src/docker.ts";
import { fileSha256, removeTestImages, REPO_ROOT, writeChecksums } from "./fixtures.ts";
import { freePort } from "./release_fixture.ts";
import { buildPostgresImage } from "./postgres_image.ts";
import { buildGatewayImage, type GatewayFlavour } from "./gateway_image.ts";

export { REPO_ROOT };

/** A secret in backend/.env (the stand-in's admin password): it must never be printed. */
export const DB_SECRET = "cit-DbSeCrEt-" + crypto.randomUUID().slice(0, 8);

export type GatewayKind = "0.1" | "0.2" | "0.2-broken";

/** Images saved once per test file. */
export interface DbImages {
  label: string;
  prefix: string;
  work: string;
  pgRef: string;
  pgId: string;
  pgTar: string;
  gwRef: string;
  gateways: Record<GatewayKind, { id: string; tar: string }>;
  /** Wall time of building and saving them. */
  buildMs: number;
  cleanup(): Promise<void>;
}

async function must(p: Promise<{ code: number; stdout: string; stderr: string }>, what: string) {
  const r = await p;
  if (r.code !== 0) throw new Error(`${what} failed (${r.code}): ${r.stderr || r.stdout}`);
  return r.stdout.trim();
}

/** Builds the PostgreSQL image and the gateway builds, and `docker save`s each once. */
export async function buildDbImages(kinds: GatewayKind[]): Promise<DbImages> {
  const t0 = performance.now();
  const label = `db${crypto.randomUUID().slice(0, 8)}`;
  const prefix = `cit-${label}`;
  const work = await Deno.makeTempDir({ prefix: `cit-dbimg-${label}-` });
  const pgRef = `${prefix}/postgres:16`;
  const gwRef = `${prefix}/cortex-gateway:latest`;
  const cleanup = async () => {
    await removeTestImages(label);
    await Deno.remove(work, { recursive: true }).catch(() => {});
  };
  try {
    const pg = await buildPostgresImage({ ref: pgRef, label });
    const pgTar = `${work}/postgres.tar`;
    await must(runDocker(["save", "-o", pgTar, pgRef]), "docker save postgres");
    const gateways = {} as DbImages["gateways"];
    // One after the other: each build takes the tag, and is saved while it has it.
    for (const kind of kinds) {
      const flavour: GatewayFlavour = kind === "0.1" ? "0.1" : "0.2";
      const g = await buildGatewayImage({
        flavour,
        ref: gwRef,
        label,
        ...(kind === "0.2-broken" ? { env: { STANDIN_FAIL: "never-healthy" } } : {}),
      });
      const tar = `${work}/gateway-${kind}.tar`;
      await must(runDocker(["save", "-o", tar, gwRef]), `docker save gateway ${kind}`);
      gateways[kind] = { id: g.id, tar };
    }
    return {
      label,
      prefix,
      work,
      pgRef,
      pgId: pg.id,
      pgTar,
      gwRef,
      gateways,
      buildMs: performance.now() - t0,
      cleanup,
    };
  } catch (e) {
    await cleanup();
    throw e;
  }
}

/** One host: its Cortex dir, state, ports, project. */
export interface DbWorld {
  root: string;
  project: string;
  cortexDir: string;
  composeFile: string;
  stateDir: string;
  manifestPath: string;
  ports: { postgres: number; gateway: number };
  pg: { user: string; db: string; password: string };
  /** `install` arguments (unattended, --json) for a bundle. */
  installArgs(bundleDir: string, extra?: string[]): string[];
  /** psql in the stack's postgres container (unaligned, tuples only). */
  psql(sql: string): Promise<string>;
  /** The running container of a service: ID and image ID, health. */
  service(name: string): Promise<{ id: string; image: string; health?: string } | undefined>;
  cleanup(): Promise<void>;
}

function composeText(img: DbImages, w: Pick<DbWorld, "ports" | "pg">): string {
  const { user, db, password } = w.pg;
  return `# cortex-install database journeys: Cortex 0.1's services on host networking, loopback ports
services:
  postgres:
    image: ${img.pgRef}
    network_mode: host
    environment:
      POSTGRES_USER: ${user}
      POSTGRES_PASSWORD: ${password}
      POSTGRES_DB: ${db}
      PGPORT: "${w.ports.postgres}"
    healthcheck:
      test: ["CMD-SHELL", "pg_isready -U ${user} -d ${db}"]
      interval: 3s
      timeout: 3s
      retries: 20
    volumes:
      - postgres_data:/var/lib/postgresql/data
  gateway:
    image: ${img.gwRef}
    network_mode: host
    env_file:
      - ./backend/.env.prod
    environment:
      DATABASE_URL: postgresql+asyncpg://${user}:${password}@127.0.0.1:${w.ports.postgres}/${db}
      STANDIN_PORT: "${w.ports.gateway}"
      ADMIN_BOOTSTRAP_USERNAME: admin
      CORTEX_MODELS_DIR: \${CORTEX_MODELS_DIR:-/var/cortex/models}
    healthcheck:
      test: ["CMD-SHELL", "curl -fsS http://127.0.0.1:${w.ports.gateway}/health"]
      interval: 3s
      timeout: 3s
      retries: 40
    depends_on: [postgres]
volumes:
  postgres_data:
`;
}

function releaseManifest(img: DbImages, gatewayPort: number): unknown {
  return {
    schema: 1,
    release: "0.0.0-test",
    images: [
      { role: "postgres", repository: `${img.prefix}/postgres`, critical: true },
      { role: "gateway", repository: `${img.prefix}/cortex-gateway`, critical: true },
    ],
    env: {
      offline: { OFFLINE_MODE: "True" },
      online: { OFFLINE_MODE: "False" },
      paths: { CORTEX_MODELS_DIR: "{modelsDir}" },
    },
    readiness: [{
      service: "gateway",
      url: `http://127.0.0.1:${gatewayPort}/health`,
      expectJson: { status: "ok" },
    }],
    pins: {},
  };
}

/** Makes a host (no containers yet). */
export async function newDbWorld(img: DbImages): Promise<DbWorld> {
  const tag = crypto.randomUUID().slice(0, 8);
  const root = await Deno.makeTempDir({ prefix: `cit-dbworld-${tag}-` });
  const project = `${img.prefix}-${tag}`;
  const ports = { postgres: freePort(), gateway: freePort() };
  const pg = { user: "cx_owner", db: "cx_data", password: `pw${tag}` };
  const cortexDir = `${root}/Cortex`;
  await Deno.mkdir(`${cortexDir}/backend`, { recursive: true });
  const composeFile = `${cortexDir}/docker.compose.prod.yaml`;
  await Deno.writeTextFile(composeFile, composeText(img, { ports, pg }));
  await Deno.writeTextFile(
    `${cortexDir}/backend/.env`,
    `# test backend/.env\nADMIN_BOOTSTRAP_PASSWORD=${DB_SECRET}\n`,
  );
  await Deno.writeTextFile(`${cortexDir}/backend/.env.prod`, "# test backend/.env.prod\n");
  const manifestPath = `${root}/release.json`;
  await Deno.writeTextFile(manifestPath, JSON.stringify(releaseManifest(img, ports.gateway)));
  const stateDir = `${root}/state`;
  const service = async (name: string) => {
    const r = await runDocker([
      "ps",
      "-q",
      "--no-trunc",
      "--filter",
      `label=com.docker.compose.project=${project}`,
      "--filter",
      `label=com.docker.compose.service=${name}`,
    ]);
    const id = r.stdout.split("\n")[0]?.trim();
    if (!id) return undefined;
    const i = await runDocker([
      "inspect",
      "--format",
      "{{.Image}}\t{{if .State.Health}}{{.State.Health.Status}}{{end}}",
      id,
    ]);
    const [image, health] = i.stdout.trim().split("\t");
    return { id, image, health: health || undefined };
  };
  return {
    root,
    project,
    cortexDir,
    composeFile,
    stateDir,
    manifestPath,
    ports,
    pg,
    service,
    installArgs: (bundleDir, extra = []) =>
      mergeArgs([
        "install",
        "--bundle",
        bundleDir,
        "--cortex-dir",
        cortexDir,
        "--compose-file",
        composeFile,
        "--project-name",
        project,
        "--models-dir",
        `${root}/models`,
        "--hf-cache-dir",
        `${root}/hf-cache`,
        "--state-dir",
        stateDir,
        "--manifest",
        manifestPath,
        "--offline",
        "--yes",
        "--json",
        // Generous: a wait ends as soon as the stack is healthy; a busy CI host may take minutes.
        "--wait-timeout",
        "300",
      ], extra),
    psql: async (sql) => {
      const c = await service("postgres");
      if (!c) throw new Error("postgres is not running");
      return await must(
        runDocker([
          "exec",
          c.id,
          "psql",
          "-X",
          "-q",
          "-At",
          "-v",
          "ON_ERROR_STOP=1",
          "-U",
          pg.user,
          "-d",
          pg.db,
          "-c",
          sql,
        ]),
        `psql ${sql.slice(0, 40)}`,
      );
    },
    cleanup: async () => {
      const ps = await runDocker([
        "ps",
        "-aq",
        "--filter",
        `label=com.docker.compose.project=${project}`,
      ]);
      const ids = ps.stdout.split("\n").map((s) => s.trim()).filter(Boolean);
      if (ids.length) await runDocker(["rm", "-f", "-v", ...ids]);
      await runDocker(["volume", "rm", `${project}_postgres_data`]);
      await Deno.remove(root, { recursive: true }).catch(() => {});
    },
  };
}

/** A Cortex 0.1 script bundle (flat tars, manifest.json, checksums) of postgres and a gateway. */
export async function scriptBundle(
  img: DbImages,
  dir: string,
  version: string,
  gateway: GatewayKind,
): Promise<string> {
  await Deno.mkdir(dir, { recursive: true });
  const files: Record<string, string> = {
    "postgres-16.tar": img.pgTar,
    "cortex-gateway-latest.tar": img.gateways[gateway].tar,
  };
  const digests: Record<string, string> = {};
  for (const [name, src] of Object.entries(files)) {
    await Deno.link(src, `${dir}/${name}`);
    digests[name] = await fileSha256(`${dir}/${name}`);
  }
  await Deno.writeTextFile(
    `${dir}/manifest.json`,
    JSON.stringify({
      created: "2026-01-18T12:00:00Z",
      cortex_version: version,
      prepared_by: "cit@test",
      images: {
        engines: [],
        infrastructure: [
          { name: img.pgRef, file: "postgres-16.tar", purpose: "Database" },
          { name: img.gwRef, file: "cortex-gateway-latest.tar", purpose: "Gateway" },
        ],
      },
    }),
  );
  await writeChecksums(dir, digests);
  return dir;
}

/**
 * A Cortex 0.1 Admin-UI export: images/<ref>.tar of postgres and a gateway, manifest.json with
 * settings, db/cortex.sql (the given dump file), checksums.sha256 over all of them.
 */
export async function adminBundle(
  img: DbImages,
  dir: string,
  gateway: GatewayKind,
  dumpFile: string,
): Promise<string> {
  await Deno.mkdir(`${dir}/images`, { recursive: true });
  await Deno.mkdir(`${dir}/db`, { recursive: true });
  const name = (ref: string) => `images/${ref.replaceAll(":", "__").replaceAll("/", "_")}.tar`;
  const digests: Record<string, string> = {};
  for (const [ref, src] of [[img.pgRef, img.pgTar], [img.gwRef, img.gateways[gateway].tar]]) {
    await Deno.link(src, `${dir}/${name(ref)}`);
    digests[name(ref)] = await fileSha256(`${dir}/${name(ref)}`);
  }
  await Deno.copyFile(dumpFile, `${dir}/db/cortex.sql`);
  digests["db/cortex.sql"] = await fileSha256(`${dir}/db/cortex.sql`);
  await Deno.writeTextFile(
    `${dir}/manifest.json`,
    JSON.stringify({
      version: "0.1.1",
      created_at: "2026-01-18T12:00:00Z",
      settings: { CORTEX_MODELS_DIR: "/var/cortex/models", OFFLINE_MODE: true },
    }),
  );
  digests["manifest.json"] = await fileSha256(`${dir}/manifest.json`);
  await Deno.writeTextFile(`${dir}/status.json`, JSON.stringify({ status: "completed" }));
  await writeChecksums(dir, digests);
  return dir;
}

/** Rewrites the checksum line of one file of a bundle (after the test changed the file). */
export async function updateChecksum(dir: string, path: string): Promise<void> {
  const sums = await Deno.readTextFile(`${dir}/checksums.sha256`);
  const sha = await fileSha256(`${dir}/${path}`);
  await Deno.writeTextFile(
    `${dir}/checksums.sha256`,
    sums.split("\n").map((l) => l.endsWith(`  ${path}`) ? `${sha}  ${path}` : l).join("\n"),
  );
}

/** Bytes of a file, or -1 when absent. */
export async function sizeOf(path: string): Promise<number> {
  return (await Deno.stat(path).catch(() => undefined))?.size ?? -1;
}
