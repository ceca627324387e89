/**
 * A real PostgreSQL server image for journeys, built without any pull: this host's Debian
 * `postgresql-15` server (/usr/lib/postgresql/15: postgres, initdb, pg_ctl, pg_isready, pg_dump,
 * psql, ...; /usr/share/postgresql/15; every library `ldd` names), busybox-static, and an entry
 * script (standin/postgres/docker-entrypoint.sh) honouring POSTGRES_USER / POSTGRES_PASSWORD /
 * POSTGRES_DB like the official `postgres` image, plus PGPORT and POSTGRES_LISTEN_ADDRESSES for
 * host networking on random loopback ports. `docker import`ed once per test process.
 *
 * ```ts
 * const img = await postgresImage();                  // cached per process
 * const pg = await startPostgres({ image: img.ref });  // docker run --network host, random port
 * try {
 *   await pg.psql("CREATE TABLE t (x int)");
 * } finally {
 *   await pg.remove();
 * }
 * // at the end of the test file: await removeTestImages(img.label)
 * ```
 */
import { runDocker } from "../../src/docker.ts";
import { freePort } from "./release_fixture.ts";
import { filesIn, RootFs } from "./rootfs.ts";

const PG_LIB = "/usr/lib/postgresql/15";
const PG_SHARE = "/usr/share/postgresql/15";
const ENTRY = new URL("./standin/postgres/docker-entrypoint.sh", import.meta.url).pathname;

/** The postgres user inside the image (the official image uses 999 too). */
export const PG_UID = 999;

export interface PgImage {
  /** The tag, e.g. `cit-pg-b1a2b3c4/postgres:15`. */
  ref: string;
  /** `sha256:...` */
  id: string;
  /** The `cit=<label>` label every image of this process carries (removeTestImages(label)). */
  label: string;
  /** Wall time of `docker import` alone. */
  importMs: number;
  /** Wall time of assembling the root filesystem. */
  rootfsMs: number;
  /** Image size as the engine reports it. */
  sizeBytes: number;
}

let cached: Promise<PgImage> | undefined;

/** The PostgreSQL test image of this process, built on first use (later calls share it). */
export function postgresImage(): Promise<PgImage> {
  cached ??= buildPostgresImage();
  return cached;
}

/** Builds a PostgreSQL image (uncached) under `ref`, labelled `cit=<label>`. */
export async function buildPostgresImage(
  o: { ref?: string; label?: string } = {},
): Promise<PgImage> {
  const label = o.label ?? `pg${crypto.randomUUID().slice(0, 8)}`;
  const ref = o.ref ?? `cit-pg-${label}/postgres:15`;
  const t0 = performance.now();
  const fs = await RootFs.create([
    { name: "postgres", uid: PG_UID, home: "/var/lib/postgresql" },
  ]);
  try {
    fs.include(PG_LIB);
    fs.include(PG_SHARE);
    // llvmjit needs LLVM (105 MB) and is useless here: left out, and jit=off in the entry script.
    // postmaster is a link to postgres (tar -h would store a second copy).
    for (const x of ["lib/llvmjit*", "lib/bitcode", "bin/postmaster"]) {
      fs.exclude(`${PG_LIB.slice(1)}/${x}`);
    }
    const binaries = (await filesIn(`${PG_LIB}/bin`)).filter((f) => !f.endsWith("/postmaster"));
    const modules = (await filesIn(`${PG_LIB}/lib`, ".so")).filter((f) => !/llvmjit/.test(f));
    const unresolved = await fs.includeLibrariesOf([...binaries, ...modules]);
    for (const f of unresolved) fs.exclude(f.slice(1));
    // Debian builds PostgreSQL with the system tzdata; UTC is all the tests need.
    for (const z of ["UTC", "Etc/UTC", "GMT", "Etc/GMT"]) fs.include(`/usr/share/zoneinfo/${z}`);
    for (
      const d of ["/var/run/postgresql", "/var/lib/postgresql/data", "/docker-entrypoint-initdb.d"]
    ) {
      await fs.mkdir(d);
    }
    await fs.write("/usr/local/bin/docker-entrypoint.sh", await Deno.readFile(ENTRY), 0o755);
    // initdb asks `locale -a` for the system's locales; answer "C" quietly instead of "not found".
    await fs.write("/usr/bin/locale", "#!/bin/sh\nprintf 'C\\nPOSIX\\n'\n", 0o755);
    // A unique file, so two builds never share an image ID.
    await fs.write("/cit-id", `${ref} ${crypto.randomUUID()}\n`);
    const rootfsMs = performance.now() - t0;
    const { id, importMs } = await fs.import(ref, [
      `LABEL cit=${label}`,
      `ENV PATH=${PG_LIB}/bin:/usr/local/bin:/usr/bin:/bin`,
      "ENV PGDATA=/var/lib/postgresql/data",
      "ENV TZ=UTC",
      'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]',
      'CMD ["postgres"]',
    ]);
    const size = await runDocker(["image", "inspect", "--format", "{{.Size}}", id]);
    return { ref, id, label, importMs, rootfsMs, sizeBytes: Number(size.stdout.trim()) };
  } finally {
    await fs.remove();
  }
}

export interface StartPostgresOptions {
  /** Image ref (default: this process's `postgresImage()`). */
  image?: string;
  /** Loopback port (default: a free one). */
  port?: number;
  user?: string;
  password?: string;
  db?: string;
  /** A host dir or a volume name mounted as the data dir (default: the container's own layer). */
  data?: string;
  /** Container name (default `cit-pg-<random>`). */
  name?: string;
  /** Extra `docker run` arguments placed before the image. */
  runArgs?: string[];
}

/** A running test PostgreSQL container. */
export interface PgContainer {
  name: string;
  id: string;
  port: number;
  user: string;
  password: string;
  db: string;
  /** `postgresql://user:password@127.0.0.1:port/db` (for the gateway stand-in's DATABASE_URL). */
  url: string;
  /**
   * Runs SQL with psql through `docker exec` (Unix socket) in `db` (default the container's);
   * returns unaligned tuples-only stdout.
   */
  psql(sql: string, db?: string): Promise<string>;
  /** `docker exec <ctr> ...args` */
  exec(args: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
  /** `docker rm -f -v` the container. */
  remove(): Promise<void>;
}

/**
 * `docker run -d --network host` of the PostgreSQL image on a loopback port; waits until
 * `pg_isready` answers for the database (initdb included, about a second). Throws with the
 * container's log when it does not become ready in 60 s.
 */
export async function startPostgres(o: StartPostgresOptions = {}): Promise<PgContainer> {
  const image = o.image ?? (await postgresImage()).ref;
  const port = o.port ?? freePort();
  const user = o.user ?? "cortex";
  const password = o.password ?? `pw-${crypto.randomUUID().slice(0, 8)}`;
  const db = o.db ?? user;
  const name = o.name ?? `cit-pg-${crypto.randomUUID().slice(0, 8)}`;
  const run = await runDocker([
    "run",
    "-d",
    "--name",
    name,
    "--network",
    "host",
    "-e",
    `PGPORT=${port}`,
    "-e",
    `POSTGRES_USER=${user}`,
    "-e",
    `POSTGRES_PASSWORD=${password}`,
    "-e",
    `POSTGRES_DB=${db}`,
    ...(o.data ? ["-v", `${o.data}:/var/lib/postgresql/data`] : []),
    ...(o.runArgs ?? []),
    image,
  ]);
  if (run.code !== 0) throw new Error(`docker run ${image} failed: ${run.stderr}`);
  const id = run.stdout.trim();
  const exec = (args: string[]) => runDocker(["exec", id, ...args]);
  const c: PgContainer = {
    name,
    id,
    port,
    user,
    password,
    db,
    url: `postgresql://${user}:${encodeURIComponent(password)}@127.0.0.1:${port}/${db}`,
    exec,
    psql: async (sql, inDb = db) => {
      const r = await exec([
        "psql",
        "-X",
        "-q",
        "-At",
        "-v",
        "ON_ERROR_STOP=1",
        "-U",
        user,
        "-d",
        inDb,
        "-c",
        sql,
      ]);
      if (r.code !== 0) throw new Error(`psql failed (${r.code}): ${r.stderr}`);
      return r.stdout.trim();
    },
    remove: async () => {
      await runDocker(["rm", "-f", "-v", id]);
    },
  };
  await waitPgReady(c);
  return c;
}

/**
 * Waits until the server takes connections: polls its loopback TCP port from here (the entry
 * script keeps TCP closed until initialisation is over, as the official image does), then asks
 * `pg_isready` in the container. 60 s at most; throws with the container's log.
 */
export async function waitPgReady(c: PgContainer, timeoutMs = 60_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  let lastCheck = Date.now();
  while (Date.now() < until) {
    let open = false;
    try {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: c.port });
      conn.close();
      open = true;
    } catch {
      // not listening yet
    }
    if (open) {
      const r = await c.exec(["pg_isready", "-q", "-h", "127.0.0.1", "-U", c.user, "-d", c.db]);
      if (r.code === 0) return;
    }
    // docker calls are slow on a busy host: look at the container's state once a second only.
    if (Date.now() - lastCheck > 1000) {
      lastCheck = Date.now();
      const st = await runDocker(["inspect", "--format", "{{.State.Running}}", c.id]);
      if (st.stdout.trim() === "false") break;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  const logs = await runDocker(["logs", "--tail", "30", c.id]);
  throw new Error(
    `PostgreSQL container ${c.name} did not become ready:\n${logs.stdout}${logs.stderr}`,
  );
}
