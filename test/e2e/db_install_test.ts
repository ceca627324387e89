/**
 * Journeys: an Admin-UI migration package's database (`db/cortex.sql`) on a fresh host, with real
 * parts (test/support/db_world.ts: Debian's PostgreSQL 15 as the stack's postgres, Cortex 0.1's
 * gateway stand-in, an Admin-UI export built with real `docker save` whose dump is a real pg_dump
 * of a 0.1 schema with rows). The CLI runs as a subprocess. One host, step after step:
 *
 *   fresh install killed (-9) while the dump is being restored: the database is all or nothing;
 *   run again: the rows are there and the gateway runs on them -> a second install restores
 *   nothing -> --restore-db onto the database holding data: backed up first, then replaced ->
 *   a dump cut short (checksum updated to match): refused before anything changes -> a dump
 *   damaged in its middle (its end intact, checksum updated): the restore fails, the database is
 *   left as it was and the gateway runs again.
 */
import { assert, assertEquals, assertMatch } from "../support/assert.ts";
import { runCli } from "../support/fixtures.ts";
import { spawnCli } from "../support/release_fixture.ts";
import { startPostgres } from "../support/postgres_image.ts";
import {
  adminBundle,
  buildDbImages,
  DB_SECRET,
  type DbImages,
  newDbWorld,
  updateChecksum,
} from "../support/db_world.ts";
import { runDocker } from "../../src/docker.ts";

const opts = { sanitizeResources: false, sanitizeOps: false };

// deno-lint-ignore no-explicit-any
type Json = any;

const SCHEMA = new URL("../support/standin/gateway/sql/schema_0.1.sql", import.meta.url).pathname;
const EXPORT_ROW = "Model from the staging instance";
const USAGE_ROWS = 40_000;

/**
 * The export's dump: a real pg_dump of a Cortex 0.1 schema (the stand-in's create_all) holding a
 * model, an org, a user and USAGE_ROWS usage rows (~10 MB), made in a throwaway PostgreSQL as the
 * staging instance's Admin UI would (user `cortex`).
 */
async function exportDump(img: DbImages, file: string): Promise<void> {
  const pg = await startPostgres({ image: img.pgRef, user: "cortex", db: "cortex" });
  try {
    await pg.psql(await Deno.readTextFile(SCHEMA));
    await pg.psql(
      `INSERT INTO organizations (name) VALUES ('Staging org');` +
        `INSERT INTO users (username, password_hash, role) VALUES ('alice', 'x', 'Admin');` +
        `INSERT INTO models (name, served_model_name, engine_args) VALUES ('${EXPORT_ROW}', 'staged', '--x');` +
        "INSERT INTO usage (model_name, task, total_tokens, req_id) SELECT 'model-' || (g % 30), " +
        `repeat('y', 150), g, md5(g::text) FROM generate_series(1, ${USAGE_ROWS}) g`,
    );
    const out = await Deno.open(file, { write: true, create: true, truncate: true });
    const r = await runDocker(["exec", pg.id, "pg_dump", "-U", "cortex", "-d", "cortex"], {
      stdout: out.writable,
    });
    if (r.code !== 0) throw new Error(`pg_dump: ${r.stderr}`);
    // The runner does not close the sink.
    await out.writable.close();
  } finally {
    await pg.remove();
  }
}

Deno.test({
  name:
    "database journeys: an Admin-UI export's dump on a fresh host (kill -9 during the restore, " +
    "never twice, --restore-db after a backup, cut and damaged dumps)",
  ...opts,
  fn: async (t) => {
    const t0 = performance.now();
    const img = await buildDbImages(["0.1"]);
    const w = await newDbWorld(img);
    const outputs: string[] = [];
    const cli = async (args: string[]) => {
      const r = await runCli(args);
      outputs.push(r.stdout, r.stderr);
      return r;
    };
    const timings: string[] = [`images ${(img.buildMs / 1000).toFixed(1)} s`];
    try {
      const dump = `${img.work}/cortex.sql`;
      await exportDump(img, dump);
      const bundle = await adminBundle(img, `${w.root}/cortex-export`, "0.1", dump);
      const dumpBytes = (await Deno.stat(dump)).size;
      const healthy = async () => {
        const g = await w.service("gateway");
        assertEquals(g?.image, img.gateways["0.1"].id);
        assertEquals(g?.health, "healthy");
        const res = await fetch(`http://127.0.0.1:${w.ports.gateway}/health`);
        assertEquals(await res.json(), { status: "ok" });
      };
      const exported = async () => {
        assertEquals(
          await w.psql("SELECT name FROM models WHERE served_model_name = 'staged'"),
          EXPORT_ROW,
        );
        assertEquals(await w.psql("SELECT count(*) FROM usage"), String(USAGE_ROWS));
        assertEquals(await w.psql("SELECT username FROM users WHERE role = 'Admin'"), "alice");
      };
      const restores = async () =>
        (JSON.parse(await Deno.readTextFile(`${w.stateDir}/journal.json`)).database?.events ?? [])
          .filter((e: Json) => e.kind === "restore").length;

      await t.step("a fresh install killed (-9) during the restore, then run again", async () => {
        const run = spawnCli(w.installArgs(bundle));
        assert(await run.waitFor(/Restoring the database/), run.stderr());
        // Into the stream: psql is reading the dump by now (it takes a few seconds).
        await new Promise((r) => setTimeout(r, 400));
        run.child.kill("SIGKILL");
        await run.done;
        // All or nothing: the restore is one transaction (its psql saw its input end, no COMMIT).
        const tables = await w.psql(
          "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
        );
        const state = tables === "0" ? "empty" : await w.psql("SELECT count(*) FROM usage");
        assert(state === "empty" || state === String(USAGE_ROWS), `half a restore: ${state}`);
        timings.push(`after the kill: ${state === "empty" ? "nothing committed" : "committed"}`);
        assertEquals(await w.service("gateway"), undefined, "the gateway never started");

        const s = performance.now();
        const r = await cli(w.installArgs(bundle));
        assertEquals(r.code, 0, r.stderr);
        const j: Json = JSON.parse(r.stdout);
        assertEquals(j.plan.database.restore?.file ?? "db/cortex.sql", "db/cortex.sql");
        if (j.database?.restored) {
          timings.push(
            `restore ${
              (j.database.restored.bytes / 1e6).toFixed(1)
            } MB in ${j.database.restored.durationMs} ms`,
          );
          assertEquals(j.database.restored.bytes, dumpBytes);
        } else {
          // The killed run had committed: the re-run found the dump in the database.
          assert(state !== "empty", JSON.stringify(j.database));
        }
        timings.push(`install ${((performance.now() - s) / 1000).toFixed(1)} s`);
        await exported();
        await healthy();
      });

      await t.step("a second install does not restore again", async () => {
        await w.psql("INSERT INTO usage (model_name, total_tokens) VALUES ('written since', 1)");
        const n = await restores();
        const again = await cli(w.installArgs(bundle));
        assertEquals(again.code, 0, again.stderr);
        assertEquals(JSON.parse(again.stdout).outcome, "unchanged");
        // A full run (other inputs) would not either: its plan says why.
        const args = w.installArgs(bundle, ["--models-dir", `${w.root}/models2`]);
        const full = await cli(["plan", ...args.slice(1).filter((a) => a !== "--yes")]);
        assertEquals(full.code, 0, full.stderr);
        const j: Json = JSON.parse(full.stdout);
        assertEquals(j.outcome, "planned");
        assertEquals(j.plan.database.restore, undefined);
        assertMatch(j.plan.database.notes.join("\n"), /is installed and keeps its database/);
        assertEquals(await restores(), n);
        assertEquals(await w.psql("SELECT count(*) FROM usage"), String(USAGE_ROWS + 1));
      });

      await t.step("--restore-db onto a database holding data backs it up first", async () => {
        const r = await cli(w.installArgs(bundle, ["--restore-db"]));
        assertEquals(r.code, 0, r.stderr);
        const j: Json = JSON.parse(r.stdout);
        assertEquals(j.plan.database.restore.replace, true);
        const b = j.database.backupBeforeRestore;
        assertMatch(await Deno.readTextFile(b.path), /written since/);
        assertEquals(j.database.restored.bytes, dumpBytes);
        await exported();
        await healthy();
      });

      await t.step(
        "a dump cut short (checksum updated to match) is refused before anything changes",
        async () => {
          await w.psql("INSERT INTO usage (model_name, total_tokens) VALUES ('marker', 2)");
          const cut = `${w.root}/export-cut`;
          await adminBundle(img, cut, "0.1", dump);
          await Deno.truncate(`${cut}/db/cortex.sql`, Math.floor(dumpBytes / 2));
          await updateChecksum(cut, "db/cortex.sql");
          const r = await cli(w.installArgs(cut, ["--restore-db"]));
          assertEquals(r.code, 4, r.stderr);
          assertMatch(r.stderr, /db\/cortex\.sql: it does not end with pg_dump's closing line/);
          assertEquals(await w.psql("SELECT count(*) FROM usage"), String(USAGE_ROWS + 1));
          await healthy();
        },
      );

      await t.step(
        "a dump damaged in its middle fails the restore; the database is left as it was",
        async () => {
          const bad = `${w.root}/export-bad`;
          await adminBundle(img, bad, "0.1", dump);
          // A row of the usage table's COPY data with a column too many: psql stops there.
          const text = await Deno.readTextFile(dump);
          const i = text.indexOf("\n", text.indexOf("\n", text.indexOf("COPY public.usage")) + 1);
          await Deno.writeTextFile(
            `${bad}/db/cortex.sql`,
            text.slice(0, i) + "\tone column too many" + text.slice(i),
          );
          await updateChecksum(bad, "db/cortex.sql");
          const r = await cli(w.installArgs(bad, ["--restore-db"]));
          assertEquals(r.code, 6, r.stderr);
          assertMatch(r.stderr, /left as it was before the restore/);
          assertMatch(
            r.stderr,
            /line \d+ of the dump: ERROR: +extra data after last expected column/,
          );
          assertEquals(await w.psql("SELECT count(*) FROM usage"), String(USAGE_ROWS + 1));
          assertEquals(await w.psql("SELECT count(*) FROM usage WHERE model_name = 'marker'"), "1");
          // The gateway stopped for the restore runs again.
          await healthy();
        },
      );

      for (const out of outputs) assert(!out.includes(DB_SECRET), "no secret printed");
      for (const out of outputs) assert(!out.includes(w.pg.password), "no database password");
      console.error(
        `db install journeys (dump ${(dumpBytes / 1e6).toFixed(1)} MB): ${
          timings.join("; ")
        }; total ${((performance.now() - t0) / 1000).toFixed(1)} s`,
      );
    } finally {
      await w.cleanup();
      await img.cleanup();
    }
  },
});
