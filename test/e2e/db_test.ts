/**
 * The database pieces of issue 9 against real parts: Debian's PostgreSQL 15 server in a test image
 * (test/support/postgres_image.ts) and the gateway stand-in (test/support/gateway_image.ts), each
 * `docker run --network host` on its own random loopback port. What each part stands for:
 * - the 0.1 stand-in: Cortex 0.1.1's gateway, schema by create_all, no alembic_version (facts §9);
 * - the 0.2 stand-in: Cortex 0.2's gateway, Alembic at start-up: stamps 0001_baseline on a 0.1
 *   schema, applies the irreversible 0002 (facts §5), `/health` ok only after it (§8), login and
 *   the bundles API (§6);
 * - `STANDIN_FAIL=never-healthy`: a 0.2 gateway that migrated the database and then never became
 *   healthy (the failed upgrade that must roll back with the database restored).
 * src/host/db.ts and src/host/cortex_api.ts run in this process with the real docker CLI.
 * Images are built once for this file and removed at its end.
 */
import {
  assert,
  assertEquals,
  assertMatch,
  assertRejects,
  assertThrows,
} from "../support/assert.ts";
import { removeTestImages } from "../support/fixtures.ts";
import { postgresImage, startPostgres } from "../support/postgres_image.ts";
import { gatewayImage, startGateway } from "../support/gateway_image.ts";
import {
  backupDatabase,
  inspectDatabase,
  pgIsReady,
  pgTargetFromContainer,
  restoreDatabase,
} from "../../src/host/db.ts";
import {
  bundleContainerPath,
  gatewayViewFromContainer,
  login,
  registerModels,
  scanBundle,
} from "../../src/host/cortex_api.ts";
import { InstallError, InterruptedError } from "../../src/errors.ts";
import { processDocker } from "../../src/docker.ts";

const opts = { sanitizeResources: false, sanitizeOps: false };
const run = processDocker();
const ADMIN_PASSWORD = "cit-Admin-" + crypto.randomUUID().slice(0, 12);

/** A 0.2 bundle (Admin-UI layout, facts §1) with model records for `served` names. */
async function writeBundle(dir: string, served: string[]): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  const sums: string[] = [];
  const models = [];
  for (const s of served) {
    const rel = `${s}-folder/config.json`;
    const content = JSON.stringify({ model: s });
    const file = `${dir}/models/${s}/files/${rel}`;
    await Deno.mkdir(file.slice(0, file.lastIndexOf("/")), { recursive: true });
    await Deno.writeTextFile(file, content);
    const sha = Array.from(
      new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(content))),
    ).map((b) => b.toString(16).padStart(2, "0")).join("");
    sums.push(`${sha}  models/${s}/files/${rel}`);
    await Deno.writeTextFile(
      `${dir}/models/${s}/manifest.json`,
      JSON.stringify({
        schema_version: 1,
        type: "cortex_model_export",
        name: `Model ${s}`,
        served_model_name: s,
        task: "generate",
        engine_type: "vllm",
        engine_image: "vllm/vllm-openai:v0.28.0",
        mode: "offline",
        repo_id: null,
        local_path: `${s}-folder`,
        config: { dtype: "auto" },
        files: [{ path: rel, bytes: content.length, sha256: sha }],
        files_included: true,
      }),
    );
    models.push({ served_model_name: s, name: `Model ${s}`, engine_type: "vllm" });
  }
  await Deno.writeTextFile(
    `${dir}/bundle.json`,
    JSON.stringify({
      schema_version: 1,
      kind: "cortex-bundle",
      created_at: "2026-09-10T08:15:02Z",
      cortex_version: "0.2.0",
      contents: { images: [], models, program: false, db_dump: false },
    }),
  );
  await Deno.writeTextFile(`${dir}/images.json`, "[]");
  await Deno.writeTextFile(`${dir}/checksums.sha256`, sums.sort().join("\n") + "\n");
}

Deno.test({
  name: "database journeys on a real PostgreSQL and the gateway stand-in",
  ...opts,
  fn: async (t) => {
    const [pgImg, gw01, gw02] = await Promise.all([
      postgresImage(),
      gatewayImage("0.1"),
      gatewayImage("0.2"),
    ]);
    console.error(
      `images: postgres ${(pgImg.sizeBytes / 1e6).toFixed(0)} MB imported in ${
        (pgImg.importMs / 1000).toFixed(2)
      } s (root fs ${(pgImg.rootfsMs / 1000).toFixed(2)} s); gateway stand-in ${
        (gw02.sizeBytes / 1e6).toFixed(0)
      } MB in ${(gw02.importMs / 1000).toFixed(2)} s`,
    );
    const removers: (() => Promise<void>)[] = [];
    const tmp = await Deno.makeTempDir({ prefix: "cit-db-e2e-" });
    try {
      // One server for the first three steps (initdb costs seconds on a busy host); user and
      // database are not Cortex's defaults on purpose: nothing may assume `cortex`.
      const pg = await startPostgres({ image: pgImg.ref, user: "alice", db: "shop" });
      removers.push(pg.remove);

      await t.step(
        "the PostgreSQL image: pg_isready, psql through docker exec, pg_dump with \\restrict",
        async () => {
          const ready = await pg.exec(["pg_isready", "-U", "alice", "-d", "shop"]);
          assertEquals(ready.code, 0, ready.stdout + ready.stderr);
          await pg.psql(
            "CREATE TABLE t (x int PRIMARY KEY, s text); INSERT INTO t VALUES (1, 'one'), (2, 'two')",
          );
          assertEquals(await pg.psql("SELECT string_agg(s, ',' ORDER BY x) FROM t"), "one,two");
          const dump = await pg.exec(["pg_dump", "-U", "alice", "-d", "shop"]);
          assertEquals(dump.code, 0, dump.stderr);
          // Debian's pg_dump 15.20 writes them (security fix of 15.14), as facts §5 says of Cortex's dumps.
          assertMatch(dump.stdout, /^\\restrict \S+$/m);
          assertMatch(dump.stdout, /^\\unrestrict \S+$/m);
          assertMatch(dump.stdout, /-- PostgreSQL database dump complete/);
          // TCP needs the password (host networking: 127.0.0.1 is the host's loopback).
          const noPw = await pg.exec([
            "psql",
            "-h",
            "127.0.0.1",
            "-U",
            "alice",
            "-d",
            "shop",
            "-w",
            "-c",
            "SELECT 1",
          ]);
          assert(noPw.code !== 0, "TCP connection without a password accepted");
          const target = await pgTargetFromContainer(run, pg.id);
          assertEquals([target.user, target.database, target.password], [
            "alice",
            "shop",
            pg.password,
          ]);
          assert(await pgIsReady(run, target));
        },
      );

      await t.step(
        "backup of a database with rows; restore into an emptied database; a cut dump changes nothing",
        async () => {
          const target = await pgTargetFromContainer(run, pg.id);
          await pg.psql(
            "CREATE TABLE usage (id bigserial PRIMARY KEY, model text, tokens int);" +
              "INSERT INTO usage (model, tokens) SELECT 'm' || (g % 7), g FROM generate_series(1, 20000) g;" +
              "CREATE SCHEMA extra; CREATE TABLE extra.kept (v text); INSERT INTO extra.kept VALUES ('x')",
          );
          const info = await inspectDatabase(run, target);
          assertEquals(info.holdsData, true);
          assertEquals(info.nonEmptyTables, ["extra.kept", "public.t", "public.usage"]);
          assertEquals(info.alembicVersion, null);
          const dir = `${tmp}/backups-1`;
          const b = await backupDatabase(run, target, { dir, label: "before-upgrade" });
          assertMatch(b.file, /^cortex-db-\d{8}T\d{6}Z-before-upgrade\.sql$/);
          assert(b.bytes > 100_000, `${b.bytes} bytes`);
          const text = await Deno.readTextFile(b.path);
          assertMatch(text, /^\\restrict /m);
          const sum = await Deno.readTextFile(`${b.path}.sha256`);
          assertEquals(sum, `${b.sha256}  ${b.file}\n`);
          // What an upgrade would change: rows, a table, a schema gone.
          await pg.psql(
            "DELETE FROM usage WHERE id > 10; CREATE TABLE newer (y int); DROP SCHEMA extra CASCADE",
          );
          const r = await restoreDatabase(run, target, b.path, { expectSha256: b.sha256 });
          assertEquals(r.stripped.restrict, 2);
          assertEquals(await pg.psql("SELECT count(*), sum(tokens) FROM usage"), "20000|200010000");
          assertEquals(
            await pg.psql("SELECT to_regclass('public.newer') IS NULL, (SELECT v FROM extra.kept)"),
            "t|x",
          );
          // Sequences come back too: the next id follows the restored rows.
          assertEquals(
            await pg.psql("INSERT INTO usage (model, tokens) VALUES ('n', 0) RETURNING id"),
            "20001",
          );

          // A dump cut in the middle (its checksum updated to match): refused, nothing changed.
          await pg.psql("INSERT INTO usage (model, tokens) VALUES ('marker', -1)");
          const before = await pg.psql("SELECT count(*), sum(tokens) FROM usage");
          const cut = `${tmp}/cut.sql`;
          const bytes = await Deno.readFile(b.path);
          for (const at of [Math.floor(bytes.length / 2), bytes.length - 200]) {
            await Deno.writeFile(cut, bytes.subarray(0, at));
            const e = await assertRejects(() => restoreDatabase(run, target, cut), InstallError);
            assertMatch(e.message, /truncated|ends inside table data/);
            assertMatch(e.message, /left as it was before the restore/);
            assertEquals(await pg.psql("SELECT count(*), sum(tokens) FROM usage"), before);
            assertEquals(await pg.psql("SELECT to_regclass('extra.kept') IS NOT NULL"), "t");
          }
          // An SQL error half-way (a table the dump creates already exists in its own dump twice).
          const broken = text.replace(
            /(COPY public\.usage)/,
            "CREATE TABLE public.usage (x int);\n$1",
          );
          await Deno.writeTextFile(cut, broken);
          const e = await assertRejects(() => restoreDatabase(run, target, cut), InstallError);
          assertEquals(e.exitCode, 6);
          assertMatch(e.message, /line \d+ of the dump: ERROR: {2}relation "usage" already exists/);
          assertEquals(await pg.psql("SELECT count(*), sum(tokens) FROM usage"), before);
        },
      );

      await t.step(
        "a restore interrupted mid-stream (docker CLI killed) leaves the database as it was",
        async () => {
          const target = await pgTargetFromContainer(run, pg.id);
          await pg.psql(
            "CREATE TABLE big (id int PRIMARY KEY, s text);" +
              "INSERT INTO big SELECT g, repeat('x', 100) FROM generate_series(1, 60000) g",
          );
          const b = await backupDatabase(run, target, { dir: `${tmp}/backups-2` });
          await pg.psql("DELETE FROM big WHERE id > 5");
          const ac = new AbortController();
          const e = await assertRejects(
            () =>
              restoreDatabase(run, target, b.path, {
                signal: ac.signal,
                chunkSize: 64 * 1024,
                onBytes: (n) => n > b.bytes / 3 && ac.abort(),
              }),
            InterruptedError,
          );
          assertMatch(e.message, /one transaction/);
          // The psql in the container saw its stdin close and ended: no lock left behind, nothing
          // committed. (statement_timeout: a left-over lock would fail here instead of hanging.)
          assertEquals(
            await pg.psql("SET statement_timeout = '20s'; SELECT count(*) FROM big"),
            "5",
          );
          assertEquals(
            await pg.psql(
              "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
            ),
            "0",
          );
          // And the full restore still works afterwards.
          await restoreDatabase(run, target, b.path);
          assertEquals(await pg.psql("SELECT count(*) FROM big"), "60000");
        },
      );

      // One server as Cortex's compose creates it for the last two steps (each its own database).
      const pgc = await startPostgres({ image: pgImg.ref, user: "cortex", db: "cortex" });
      removers.push(pgc.remove);

      await t.step(
        "0.1 -> 0.2 migrates; 0.1 then refuses the 0.2 schema; the 0.1 backup brings 0.1 back with its row",
        async () => {
          const pg = pgc;
          const target = await pgTargetFromContainer(run, pg.id);
          const start = async (image: string, env: Record<string, string> = {}) => {
            const g = await startGateway({
              image,
              databaseUrl: pg.url,
              adminUser: "admin",
              adminPassword: ADMIN_PASSWORD,
              env,
            });
            removers.push(g.remove);
            return g;
          };
          const v01 = await start(gw01.ref);
          await v01.waitHealthy();
          await pg.psql(
            "INSERT INTO models (name, served_model_name, engine_args) VALUES ('Row written under 0.1', 'm01', '--max-model-len 4096')",
          );
          assertEquals((await inspectDatabase(run, target)).alembicVersion, null);
          await v01.remove();
          const backup = await backupDatabase(run, target, {
            dir: `${tmp}/backups-3`,
            label: "before-0.2.0",
          });

          // A 0.2 gateway that migrates and then never becomes healthy.
          const broken = await start(gw02.ref, { STANDIN_FAIL: "never-healthy" });
          assertEquals(await broken.waitAnswer(), { status: 503, body: '{"status":"starting"}' });
          assertEquals((await inspectDatabase(run, target)).alembicVersion, "0002_engine_spec");
          await broken.remove();
          // 0002 is one-way: the 0.1 gateway no longer starts on this database.
          const refused = await start(gw01.ref);
          assertEquals(await refused.waitExit(30_000), 1);
          assertMatch(await refused.logs(), /column "engine_args" does not exist/);
          await refused.remove();
          // Rollback: restore the backup taken before the upgrade, then 0.1 starts with its row.
          await restoreDatabase(run, target, backup.path, { expectSha256: backup.sha256 });
          assertEquals((await inspectDatabase(run, target)).alembicVersion, null);
          const back = await start(gw01.ref);
          await back.waitHealthy();
          assertEquals(
            await pg.psql("SELECT name, engine_args FROM models WHERE served_model_name = 'm01'"),
            "Row written under 0.1|--max-model-len 4096",
          );
          await back.remove();

          // The upgrade that works: 0.2 stamps the baseline, applies 0002, keeps the row.
          const v02 = await start(gw02.ref);
          await v02.waitHealthy();
          assertEquals((await inspectDatabase(run, target)).alembicVersion, "0002_engine_spec");
          assertEquals(
            await pg.psql(
              "SELECT name, engine_spec->>'engine_args' FROM models WHERE served_model_name = 'm01'",
            ),
            "Row written under 0.1|--max-model-len 4096",
          );
          // A restarted 0.2 finds its own revision and starts again.
          await v02.remove();
          const again = await start(gw02.ref);
          await again.waitHealthy();
        },
      );

      await t.step(
        "login and the bundles API: models registered once, skipped on the second import",
        async () => {
          await pgc.psql("CREATE DATABASE bundles");
          const pg = {
            url: pgc.url.replace(/\/cortex$/, "/bundles"),
            psql: (sql: string) => pgc.psql(sql, "bundles"),
          };
          const media = `${tmp}/usb`;
          const bundleHost = `${media}/cortex-bundle-20260910`;
          await writeBundle(bundleHost, ["qwen-7b", "llama-8b"]);
          const modelsDir = `${tmp}/models`;
          await Deno.mkdir(`${modelsDir}/qwen-7b-folder`, { recursive: true });
          await Deno.copyFile(
            `${bundleHost}/models/qwen-7b/files/qwen-7b-folder/config.json`,
            `${modelsDir}/qwen-7b-folder/config.json`,
          );
          const gw = await startGateway({
            image: gw02.ref,
            databaseUrl: pg.url,
            adminUser: "admin",
            adminPassword: ADMIN_PASSWORD,
            env: {
              CORTEX_TRANSFER_DIRS: "/var/cortex/exports,/host/media,/host/mnt,/host/run/media",
              STANDIN_JOB_DELAY_MS: "200",
            },
            // As Cortex's compose mounts /media: here the test's "USB drive" stands for /media/usb.
            volumes: [`${media}:/host/media/usb:ro`, `${modelsDir}:/var/cortex/models`],
          });
          removers.push(gw.remove);
          await gw.waitHealthy();
          const view = await gatewayViewFromContainer(run, gw.id);
          const inside = bundleContainerPath(bundleHost, view);
          assertEquals(inside, "/host/media/usb/cortex-bundle-20260910");
          const api = { baseUrl: gw.url };
          const reg = (conflict: "skip" | "rename" | "replace" | "error") =>
            registerModels(api, {
              username: "admin",
              password: ADMIN_PASSWORD,
              containerPath: inside,
              conflict,
              pollMs: 100,
              timeoutMs: 300_000,
            });
          const first = await reg("skip");
          assertEquals(first.models.map((m) => [m.source, m.status]).sort(), [[
            "llama-8b",
            "created",
          ], ["qwen-7b", "created"]]);
          // What the gateway's scan says now (facts §6): registered, files on the host or not.
          const session = await login(api, "admin", ADMIN_PASSWORD);
          const scanned = await scanBundle(api, session, inside, true);
          assertEquals(scanned.checksums, {
            verified: true,
            ok: 2,
            bad: 0,
            missing: 0,
            present: true,
          });
          const seen = scanned.models.map((m) =>
            [m.served_model_name, m.already_registered, m.files_present_on_host] as const
          );
          assertEquals(seen.sort(), [["llama-8b", true, false], ["qwen-7b", true, true]]);
          const second = await reg("skip");
          assertEquals(second.models.map((m) => [m.servedModelName, m.status]).sort(), [[
            "llama-8b",
            "skipped",
          ], ["qwen-7b", "skipped"]]);
          assertEquals(
            second.models.map((m) => m.modelId).sort(),
            first.models.map((m) => m.modelId).sort(),
          );
          assertEquals(
            await pg.psql(
              "SELECT string_agg(served_model_name || ':' || state, ',' ORDER BY served_model_name) FROM models",
            ),
            "llama-8b:stopped,qwen-7b:stopped",
          );
          const renamed = await reg("rename");
          assertEquals(renamed.models.map((m) => m.servedModelName).sort(), [
            "llama-8b-2",
            "qwen-7b-2",
          ]);
          const replaced = await reg("replace");
          assertEquals(
            replaced.models.map((m) => [m.servedModelName, m.status, m.modelId]).sort(),
            first.models.map((m) => [m.servedModelName, "replaced", m.modelId]).sort(),
          );
          const refused = await assertRejects(() => reg("error"), InstallError);
          assertMatch(refused.message, /already exists/);

          // What the gateway received: cookie on every /admin call, the import asked for records only.
          const reqs = await gw.requests();
          const imports = reqs.filter((r) => r.path === "/admin/bundles/import");
          assertEquals(imports.length, 5);
          for (const r of imports) {
            assertEquals(r.session, true);
            assertEquals([r.body.copy_files, r.body.load_images, r.body.path], [
              false,
              false,
              inside,
            ]);
          }
          assertEquals(imports.map((r) => r.body.conflict), [
            "skip",
            "skip",
            "rename",
            "replace",
            "error",
          ]);
          const scan = reqs.find((r) => r.path === "/admin/bundles/scan")!;
          assertMatch(scan.query, /path=%2Fhost%2Fmedia%2Fusb%2Fcortex-bundle-20260910/);
          assert(reqs.filter((r) => r.path.startsWith("/admin")).every((r) => r.session));
          // No password in anything the gateway recorded.
          assert(!(await Deno.readTextFile(gw.recordFile)).includes(ADMIN_PASSWORD));

          // A bundle outside every transfer dir is refused before any request.
          const e = assertThrows(
            () => bundleContainerPath(`${tmp}/elsewhere/bundle`, view),
            InstallError,
            /outside every transfer dir/,
          );
          assert(e.message.includes(media), e.message);

          // Without the Admin cookie: 401, as every /admin route (facts §6).
          const anon = await fetch(`${gw.url}/admin/bundles/status`);
          assertEquals(anon.status, 401);
          await anon.body?.cancel();
        },
      );
    } finally {
      for (const r of removers.reverse()) await r().catch(() => {});
      await Deno.remove(tmp, { recursive: true }).catch(() => {});
      await removeTestImages(pgImg.label);
      await removeTestImages(gw02.label);
    }
  },
});
