/**
 * Bench: backup and restore of a realistic Cortex database (issue 9), on the real PostgreSQL test
 * image. Generates Cortex 0.1's schema (the gateway stand-in's) with `--rows` usage rows (default
 * 100k), a few users, API keys and models, then times, side by side and interleaved:
 *   - backupDatabase() (src/host/db.ts: pg_dump streamed to a file, hashed, fsynced) against
 *     `docker exec <pg> pg_dump > file` (what Cortex's own `make db-backup` does, no fsync), and
 *     the same followed by `sync -f file` (the fair baseline: we fsync);
 *   - restoreDatabase() (filtered stream, one transaction, emptying included) against
 *     `docker exec -i <pg> psql < file` into an emptied database (Cortex's restore, minus its
 *     \restrict stripping).
 * Each of our operations runs in a fresh `deno` process so its peak RSS (VmHWM) is its own; a
 * process that only loads the module gives the floor.
 *
 *   deno run -A bench/lib/db.ts  (or: deno task bench --only db) [--rows 100000] [--rounds 3]
 *
 * Prints numbers; asserts nothing.
 */
import { parseArgs } from "node:util";
import { processDocker, runCommand, runDocker } from "../../src/docker.ts";
import {
  backupDatabase,
  inspectDatabase,
  pgTargetFromContainer,
  restoreDatabase,
} from "../../src/host/db.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    rows: { type: "string" },
    rounds: { type: "string" },
    child: { type: "string" },
    container: { type: "string" },
    file: { type: "string" },
    dir: { type: "string" },
  },
});

/** Peak resident memory of this process so far, in bytes (Linux VmHWM). */
function peakRss(): number {
  const m = Deno.readTextFileSync("/proc/self/status").match(/VmHWM:\s+(\d+) kB/);
  return m ? Number(m[1]) * 1024 : NaN;
}

if (values.child) {
  // One operation in its own process; prints {ms, bytes, peakRss} as JSON.
  const run = processDocker();
  const t0 = performance.now();
  let bytes = 0;
  if (values.child === "backup") {
    const t = await pgTargetFromContainer(run, values.container!);
    bytes = (await backupDatabase(run, t, { dir: values.dir! })).bytes;
  } else if (values.child === "restore") {
    const t = await pgTargetFromContainer(run, values.container!);
    bytes = (await restoreDatabase(run, t, values.file!)).bytes;
  }
  console.log(JSON.stringify({ ms: performance.now() - t0, bytes, peakRss: peakRss() }));
  Deno.exit(0);
}

const rows = Number(values.rows ?? 100_000);
const rounds = Number(values.rounds ?? 3);
const { postgresImage, startPostgres } = await import("../../test/support/postgres_image.ts");
const { removeTestImages } = await import("../../test/support/fixtures.ts");
const SCHEMA = new URL("../../test/support/standin/gateway/sql/schema_0.1.sql", import.meta.url)
  .pathname;

const img = await postgresImage();
const pg = await startPostgres({ image: img.ref });
const dir = await Deno.makeTempDir({ prefix: "cit-bench-db-" });
const self = new URL(import.meta.url).pathname;

async function child(args: string[]): Promise<{ ms: number; bytes: number; peakRss: number }> {
  const r = await runCommand(Deno.execPath(), ["run", "-A", self, ...args]);
  if (r.code !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout.trim().split("\n").pop()!);
}

async function timed(cmd: string): Promise<number> {
  const t0 = performance.now();
  const r = await runCommand("sh", ["-c", cmd]);
  if (r.code !== 0) throw new Error(`${cmd}: ${r.stderr}`);
  return performance.now() - t0;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const mb = (n: number) => (n / 1024 / 1024).toFixed(1);

try {
  console.error(`generating ${rows} usage rows...`);
  await runDocker(["cp", SCHEMA, `${pg.id}:/tmp/schema.sql`]);
  const init = await pg.exec([
    "psql",
    "-X",
    "-q",
    "-v",
    "ON_ERROR_STOP=1",
    "-U",
    pg.user,
    "-d",
    pg.db,
    "-f",
    "/tmp/schema.sql",
  ]);
  if (init.code !== 0) throw new Error(init.stderr);
  await pg.psql(`
    INSERT INTO organizations (name) VALUES ('Default');
    INSERT INTO users (username, password_hash, role, org_id)
      SELECT 'user' || g, 'sha256$' || md5(g::text) || '$' || md5('p' || g), 'User', 1 FROM generate_series(1, 50) g;
    INSERT INTO api_keys (prefix, hash, user_id)
      SELECT substr(md5(g::text), 1, 8), md5('k' || g), 1 + g % 50 FROM generate_series(1, 200) g;
    INSERT INTO models (name, served_model_name, engine_type, engine_image, local_path, config, engine_args)
      SELECT 'Model ' || g, 'model-' || g, CASE WHEN g % 3 = 0 THEN 'llamacpp' ELSE 'vllm' END,
             'vllm/vllm-openai:v0.6.3', 'model-' || g, json_build_object('dtype', 'auto', 'max_model_len', 32768),
             '--max-model-len 32768' FROM generate_series(1, 30) g;
    INSERT INTO usage (api_key_id, model_name, task, prompt_tokens, completion_tokens, total_tokens,
                       latency_ms, status_code, req_id, created_at)
      SELECT 1 + g % 200, 'model-' || (1 + g % 30), 'generate', 100 + g % 4000, 10 + g % 800,
             110 + g % 4000 + g % 800, 50 + g % 3000, CASE WHEN g % 97 = 0 THEN 500 ELSE 200 END,
             md5(g::text), now() - (g || ' seconds')::interval
        FROM generate_series(1, ${rows}) g;
    ANALYZE;`);
  const run = processDocker();
  const target = await pgTargetFromContainer(run, pg.id);
  const info = await inspectDatabase(run, target);
  console.log(`database: ${rows} usage rows, pg_database_size ${mb(info.sizeBytes)} MiB`);

  const floor = await child(["--child", "noop"]);
  const ours = { backup: [] as number[], restore: [] as number[], rssB: 0, rssR: 0, bytes: 0 };
  const base = { backup: [] as number[], synced: [] as number[], restore: [] as number[] };
  const empty = `docker exec ${pg.id} psql -X -q -v ON_ERROR_STOP=1 -U ${pg.user} -d ${pg.db} ` +
    `-c 'DROP SCHEMA public CASCADE; CREATE SCHEMA public AUTHORIZATION pg_database_owner; GRANT USAGE ON SCHEMA public TO PUBLIC'`;
  let lastBackup = "";
  for (let i = 0; i < rounds; i++) {
    const b = await child(["--child", "backup", "--container", pg.id, "--dir", `${dir}/ours-${i}`]);
    ours.backup.push(b.ms);
    ours.rssB = Math.max(ours.rssB, b.peakRss);
    ours.bytes = b.bytes;
    lastBackup = (await Array.fromAsync(Deno.readDir(`${dir}/ours-${i}`)))
      .map((e) => `${dir}/ours-${i}/${e.name}`).find((p) => p.endsWith(".sql"))!;
    base.backup.push(
      await timed(`docker exec ${pg.id} pg_dump -U ${pg.user} -d ${pg.db} > ${dir}/base-${i}.sql`),
    );
    // The fair baseline: ours fsyncs the dump (a backup in the page cache is not a backup).
    base.synced.push(
      await timed(
        `docker exec ${pg.id} pg_dump -U ${pg.user} -d ${pg.db} > ${dir}/sync-${i}.sql && sync -f ${dir}/sync-${i}.sql`,
      ),
    );
    const r = await child(["--child", "restore", "--container", pg.id, "--file", lastBackup]);
    ours.restore.push(r.ms);
    ours.rssR = Math.max(ours.rssR, r.peakRss);
    base.restore.push(
      await timed(
        `${empty} && grep -v '^\\\\\\(un\\)\\?restrict' ${dir}/base-${i}.sql | docker exec -i ${pg.id} psql -X -q -o /dev/null -U ${pg.user} -d ${pg.db}`,
      ),
    );
  }
  const count = await pg.psql("SELECT count(*) FROM usage");
  console.log(
    `dump: ${mb(ours.bytes)} MiB (${
      (ours.bytes / info.sizeBytes * 100).toFixed(0)
    }% of pg_database_size); rows after the last restore: ${count}`,
  );
  console.log(`medians of ${rounds} rounds, whole process for ours (deno start-up included):`);
  console.log(
    `  backupDatabase():           ${(median(ours.backup) / 1000).toFixed(2)} s, peak RSS ${
      mb(ours.rssB)
    } MiB`,
  );
  console.log(`  docker exec pg_dump > file: ${(median(base.backup) / 1000).toFixed(2)} s`);
  console.log(`  the same + sync -f file:    ${(median(base.synced) / 1000).toFixed(2)} s`);
  console.log(
    `  restoreDatabase():          ${(median(ours.restore) / 1000).toFixed(2)} s, peak RSS ${
      mb(ours.rssR)
    } MiB`,
  );
  console.log(`  empty + psql < file:        ${(median(base.restore) / 1000).toFixed(2)} s`);
  console.log(`  a deno process that only loads db.ts: peak RSS ${mb(floor.peakRss)} MiB`);
} finally {
  await pg.remove();
  await removeTestImages(img.label);
  await Deno.remove(dir, { recursive: true }).catch(() => {});
}
