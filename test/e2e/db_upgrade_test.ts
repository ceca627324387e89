/**
 * Journeys: the database through upgrades and rollbacks, on a 0.1-shaped Cortex host made of real
 * parts (test/support/db_world.ts: Debian's PostgreSQL 15 as the stack's postgres, the gateway
 * stand-in as its gateway, script bundles built with real `docker save`). The CLI runs as a
 * subprocess. One host goes through every step in order, each step starting from where the last
 * one left it (installs are what cost time here):
 *
 *   install 0.1.1 (a row written, ~12 MB of usage rows) -> the upgrade to 0.1.2, whose gateway
 *   migrates the schema one way, killed (-9) in the middle of pg_dump: nothing changed; run again:
 *   the backup (file, sha256 in the journal and the audit log), the partial file pruned,
 *   --keep-backups -> `rollback` (the backup restored after the replaced database was backed up;
 *   0.1.1's gateway starts on its schema with the row) -> the upgrade to 0.1.3, whose gateway
 *   migrates and never gets healthy (rolled back by itself, database restored).
 *
 * What the gateway builds stand for: 0.1 = Cortex 0.1.1 (create_all; refuses a schema Alembic 0002
 * migrated, so without the restore it would not start again: test/e2e/db_test.ts shows that);
 * 0.2 = a gateway that migrates the schema irreversibly at start (Cortex 0.2's Alembic 0002).
 */
import { assert, assertEquals, assertMatch } from "../support/assert.ts";
import { runCli } from "../support/fixtures.ts";
import { spawnCli } from "../support/release_fixture.ts";
import {
  buildDbImages,
  DB_SECRET,
  type DbImages,
  newDbWorld,
  scriptBundle,
  sizeOf,
} from "../support/db_world.ts";
import { sha256Hex } from "../../src/hash.ts";

const opts = { sanitizeResources: false, sanitizeOps: false };

// deno-lint-ignore no-explicit-any
type Json = any;

const ROW = "Row written under 0.1.1";

Deno.test({
  name: "database journeys: upgrade backups, rollback restores (on demand and automatic), " +
    "kill -9 during pg_dump, --keep-backups",
  ...opts,
  fn: async (t) => {
    const t0 = performance.now();
    const img: DbImages = await buildDbImages(["0.1", "0.2", "0.2-broken"]);
    console.error(`images built and saved in ${(img.buildMs / 1000).toFixed(1)} s`);
    const w = await newDbWorld(img);
    const outputs: string[] = [];
    const cli = async (args: string[]) => {
      const r = await runCli(args);
      outputs.push(r.stdout, r.stderr);
      return r;
    };
    const timings: string[] = [];
    try {
      const b1 = await scriptBundle(img, `${w.root}/b-0.1.1`, "0.1.1", "0.1");
      const b2 = await scriptBundle(img, `${w.root}/b-0.1.2`, "0.1.2", "0.2");
      const b3 = await scriptBundle(img, `${w.root}/b-0.1.3`, "0.1.3", "0.2-broken");
      const journal = async () => JSON.parse(await Deno.readTextFile(`${w.stateDir}/journal.json`));
      const lastAudit = async () =>
        JSON.parse((await Deno.readTextFile(`${w.stateDir}/audit.log`)).trim().split("\n").at(-1)!);
      const onRelease = async (kind: "0.1" | "0.2") => {
        const g = await w.service("gateway");
        assertEquals(g?.image, img.gateways[kind].id);
        assertEquals(g?.health, "healthy");
        const res = await fetch(`http://127.0.0.1:${w.ports.gateway}/health`);
        assertEquals(await res.json(), { status: "ok" });
      };
      const the01Schema = async () => {
        assertEquals(await w.psql("SELECT to_regclass('public.alembic_version') IS NULL"), "t");
        assertEquals(
          await w.psql("SELECT name, engine_args FROM models WHERE served_model_name = 'm01'"),
          `${ROW}|--max-model-len 4096`,
        );
      };

      const dir = `${w.stateDir}/db-backups`;
      let rows = "";
      await t.step("install 0.1.1 on a fresh host; rows are written under it", async () => {
        const s = performance.now();
        const r = await cli(w.installArgs(b1));
        assertEquals(r.code, 0, r.stderr);
        const j: Json = JSON.parse(r.stdout);
        assertEquals(j.plan.database.backup, undefined, "a fresh install backs nothing up");
        await onRelease("0.1");
        // The row the journeys follow, and enough others for pg_dump to take a moment (~12 MB).
        await w.psql(
          `INSERT INTO models (name, served_model_name, engine_args) VALUES ('${ROW}', 'm01', '--max-model-len 4096');` +
            "INSERT INTO usage (model_name, task, total_tokens, req_id) " +
            "SELECT 'model-' || (g % 30), repeat('x', 150), g, md5(g::text) FROM generate_series(1, 50000) g",
        );
        rows = await w.psql("SELECT count(*) FROM usage");
        timings.push(`install ${((performance.now() - s) / 1000).toFixed(1)} s`);
      });

      let backup1: Json;
      await t.step(
        "an upgrade killed (-9) in the middle of pg_dump changed nothing; run again, it backs up first (file, sha256 in journal and audit), the partial file pruned",
        async () => {
          const run = spawnCli(w.installArgs(b2));
          let partial = "";
          for (let i = 0; i < 6000 && !partial; i++) {
            let names: string[] = [];
            try {
              names = [...Deno.readDirSync(dir)].map((e) => e.name);
            } catch {
              // not created yet
            }
            for (const n of names) {
              if (n.endsWith(".partial") && await sizeOf(`${dir}/${n}`) > 0) partial = n;
            }
            if (!partial) await new Promise((r) => setTimeout(r, 10));
          }
          assert(partial, `no partial backup appeared: ${run.stderr()}`);
          run.child.kill("SIGKILL");
          await run.done;
          assert(
            await sizeOf(`${dir}/${partial}`) > 0,
            "killed in the middle: the partial is left",
          );
          // Nothing changed: 0.1.1 runs, whole.
          await onRelease("0.1");
          assertEquals(await w.psql("SELECT count(*) FROM usage"), rows);

          const s = performance.now();
          const r = await cli(w.installArgs(b2, ["--keep-backups", "1"]));
          assertEquals(r.code, 0, r.stderr);
          const j: Json = JSON.parse(r.stdout);
          assertEquals(j.plan.database.backup.reason, "before the upgrade from 0.1.1 to 0.1.2");
          assert(j.plan.database.backup.estimateBytes > 0);
          assert(
            j.plan.disk.some((d: Json) => d.items.some((i: Json) => i.what === "database backup")),
          );
          backup1 = j.database.backup;
          timings.push(`backup ${(backup1.bytes / 1e6).toFixed(1)} MB in ${backup1.durationMs} ms`);
          const bytes = await Deno.readFile(backup1.path);
          assertEquals(sha256Hex(bytes), backup1.sha256);
          assertEquals(bytes.length, backup1.bytes);
          assertEquals((await Deno.stat(backup1.path)).mode! & 0o777, 0o600);
          const text = new TextDecoder().decode(bytes);
          assertMatch(text, new RegExp(ROW));
          assertMatch(text, /-- PostgreSQL database dump complete/);
          assertEquals([backup1.user, backup1.database], [w.pg.user, w.pg.db]);
          assertEquals(
            await Deno.readTextFile(`${backup1.path}.sha256`),
            `${backup1.sha256}  ${backup1.path.split("/").pop()}\n`,
          );
          const jr = await journal();
          assertEquals(jr.releases[0].dbBackup.sha256, backup1.sha256);
          assertEquals(jr.releases[0].dbBackup.forBundle, jr.releases[1].bundleDigest);
          const audit = await lastAudit();
          assertEquals(audit.database.map((e: Json) => [e.kind, e.sha256, e.bytes]), [
            ["backup", backup1.sha256, backup1.bytes],
          ]);
          // The partial file of the killed run is gone, and --keep-backups 1 kept only this one.
          const name = backup1.path.split("/").pop();
          assertEquals([...Deno.readDirSync(dir)].map((e) => e.name).sort(), [
            name,
            `${name}.sha256`,
          ]);
          // 0.1.2's gateway migrated the schema (one way) and runs on it, rows kept.
          await onRelease("0.2");
          assertEquals(await w.psql("SELECT version_num FROM alembic_version"), "0002_engine_spec");
          assertEquals(await w.psql("SELECT count(*) FROM usage"), rows);
          timings.push(`upgrade ${((performance.now() - s) / 1000).toFixed(1)} s`);
        },
      );

      await t.step(
        "`rollback` restores that backup; 0.1.1's gateway starts on its schema with the row",
        async () => {
          await w.psql(
            "INSERT INTO usage (model_name, total_tokens) VALUES ('written under 0.1.2', 1)",
          );
          const s = performance.now();
          const r = await cli(["rollback", "--state-dir", w.stateDir, "--yes", "--json"]);
          assertEquals(r.code, 0, r.stderr);
          const j: Json = JSON.parse(r.stdout);
          assertEquals([j.from, j.to], ["0.1.2", "0.1.1"]);
          assertEquals(j.database.restored.path, backup1.path);
          assertEquals(j.database.restored.sha256, backup1.sha256);
          timings.push(
            `restore ${
              (j.database.restored.bytes / 1e6).toFixed(1)
            } MB in ${j.database.restored.durationMs} ms` +
              ` (rollback ${((performance.now() - s) / 1000).toFixed(1)} s)`,
          );
          // What 0.1.2 wrote is not lost: it was backed up before being replaced.
          assertMatch(
            await Deno.readTextFile(j.database.backupFirst.path),
            /written under 0\.1\.2/,
          );
          await onRelease("0.1");
          await the01Schema();
          assertEquals(await w.psql("SELECT count(*) FROM usage"), rows);
          const st = await cli(["status", "--state-dir", w.stateDir, "--json"]);
          const js: Json = JSON.parse(st.stdout);
          assertEquals(js.installed.release, "0.1.1");
          assertEquals(js.database.lastRestore.path, backup1.path);
          assertMatch(js.database.lastRestore.reason, /rollback from 0\.1\.2 to 0\.1\.1/);
          const human = await cli(["status", "--state-dir", w.stateDir]);
          assertMatch(human.stdout, new RegExp(`last database restore: from ${backup1.path}`));
        },
      );

      await t.step(
        "an upgrade whose gateway migrates and never gets healthy rolls back with the database (exit 6)",
        async () => {
          const r = await cli(w.installArgs(b3, ["--wait-timeout", "5"]));
          assertEquals(r.code, 6, r.stderr);
          assertMatch(
            r.stderr,
            /rolled back to Cortex 0\.1\.1, its database restored from \S+before-0\.1\.3\.sql, which is healthy/,
          );
          await onRelease("0.1");
          await the01Schema();
          assertEquals(await w.psql("SELECT count(*) FROM usage"), rows);
          const jr = await journal();
          assertEquals(jr.releases.map((x: Json) => x.outcome), [
            "installed",
            "rolled-back",
            "rolled-back",
          ]);
          const audit = await lastAudit();
          assertEquals(audit.database.map((e: Json) => e.kind), ["backup", "restore"]);
          assertEquals(audit.database[0].sha256, audit.database[1].sha256);
        },
      );

      for (const out of outputs) assert(!out.includes(DB_SECRET), "no secret printed");
      for (const out of outputs) {
        assert(!out.includes(w.pg.password), "no database password printed");
      }
      console.error(
        `db upgrade journeys: ${timings.join("; ")}; total ${
          ((performance.now() - t0) / 1000).toFixed(1)
        } s`,
      );
    } finally {
      await w.cleanup();
      await img.cleanup();
    }
  },
});
