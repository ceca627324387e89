/**
 * The database side of `install` and rollback through the Docker seam (the scripted engine's
 * postgres answers pg_dump, the inspect query and the one-transaction restore): what is backed up
 * when, what is restored when, and every refusal. No engine, no network. The journeys
 * (test/e2e/db_*_test.ts) do the same against the real PostgreSQL.
 */
import { assert, assertEquals, assertMatch, assertRejects } from "../../test/support/assert.ts";
import { fakeDump, ScriptedDocker } from "../../test/support/scripted_docker.ts";
import { UnitWorld } from "../../test/support/install_world.ts";
import { runInstall } from "./install.ts";
import { ExitCode, InstallError } from "../errors.ts";
import { currentRelease, readJournal, writeJournal } from "../state/journal.ts";
import { readAudit } from "../state/audit.ts";
import { rollbackTo } from "../host/rollback.ts";
import { backupsDir } from "../host/database.ts";
import { sha256Hex } from "../hash.ts";
import type { InstallOptions } from "./types.ts";

function seamTest(name: string, fn: (w: UnitWorld) => Promise<void>): void {
  Deno.test({
    name,
    sanitizeResources: false,
    sanitizeOps: false,
    fn: async () => {
      const w = await UnitWorld.create();
      try {
        await fn(w);
      } finally {
        await w.cleanup();
      }
    },
  });
}

/** The calls that change the host, shortened: load, tag, stop/start, compose up/down. */
function writes(d: ScriptedDocker): string[] {
  return d.lines().filter((l) =>
    /^docker (load|tag|rmi|stop|start)\b/.test(l) ||
    / (up|down)\b/.test(l) && l.startsWith("docker compose")
  ).map((l) =>
    l.replace(/ --project-name .* (up|down)\b/, " … $1").replace(/^(docker (stop|start)) .*/, "$1")
      .replace(/^(docker tag) .*/, "$1")
  );
}

/** Where the first call matching `re` is, in the order made (-1: none). */
function at(d: ScriptedDocker, re: RegExp): number {
  return d.lines().findIndex((l) => re.test(l));
}

async function files(dir: string): Promise<string[]> {
  const out: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) out.push(e.name);
  } catch {
    // absent
  }
  return out.sort();
}

const ROWS = [
  "INSERT INTO public.users VALUES (1, 'admin');",
  "INSERT INTO public.models VALUES (7);",
];

seamTest(
  "an upgrade backs up the database before the first load; a failed dump stops it with nothing changed (exit 3)",
  async (w) => {
    const r1 = await w.release("1.0.0", w.images("1"));
    const r2 = await w.release("1.1.0", w.images("2"));
    const docker = new ScriptedDocker();
    await runInstall(w.context(docker), w.options(r1));
    const db = docker.database(w.prefix);
    db.lines = [...ROWS];
    const env = await Deno.readTextFile(`${w.cortexDir}/backend/.env`);

    db.failDump = true;
    docker.calls.length = 0;
    const e = await assertRejects(
      () => runInstall(w.context(docker), w.options(r2)),
      InstallError,
      "pg_dump exited 1",
    );
    assertEquals(e.exitCode, ExitCode.Preflight);
    assertEquals(writes(docker), [], "nothing loaded, tagged or started");
    assertEquals(await files(backupsDir(w.stateDir)), [], "no partial file left");
    assertEquals(await Deno.readTextFile(`${w.cortexDir}/backend/.env`), env);
    let j = await readJournal(w.stateDir);
    assertEquals(currentRelease(j)?.release, "1.0.0");
    assertEquals(currentRelease(j)?.dbBackup, undefined);

    db.failDump = false;
    docker.calls.length = 0;
    const rep = await runInstall(w.context(docker), w.options(r2));
    assert(at(docker, / pg_dump /) < at(docker, /^docker load/), "the dump comes first");
    const b = rep.database!.backup!;
    assertEquals(await Deno.readTextFile(b.path), fakeDump(ROWS));
    assertEquals(b.sha256, sha256Hex(fakeDump(ROWS)));
    assertMatch(b.path, /\/db-backups\/cortex-db-\d{8}T\d{6}Z-before-1\.1\.0\.sql$/);
    assertEquals(b.reason, "before the upgrade from 1.0.0 to the new release");
    j = await readJournal(w.stateDir);
    // On the release replaced (the rollback target), for this upgrade's bundle.
    assertEquals(j.releases[0].dbBackup?.sha256, b.sha256);
    assertEquals(j.releases[0].dbBackup?.forBundle, j.releases[1].bundleDigest);
    assertEquals(j.database?.events.map((x) => x.kind), ["backup"]);
    const audit = (await readAudit(w.stateDir)).entries.at(-1)!;
    assertEquals(audit.database?.[0].sha256, b.sha256);
    // The plan said so, with the size estimate counted in the disk check.
    assertEquals(rep.plan!.database.backup?.estimateBytes, fakeDump(ROWS).length);
    assert(
      rep.plan!.disk.some((d) => d.items.some((i) => i.what === "database backup")),
      "the disk check counts the backup",
    );
  },
);

seamTest(
  "postgres stopped: the installed release's postgres starts alone for the backup, and stops again when it fails",
  async (w) => {
    const r1 = await w.release("1.0.0", w.images("1"));
    const r2 = await w.release("1.1.0", w.images("2"));
    const docker = new ScriptedDocker();
    await runInstall(w.context(docker), w.options(r1));
    docker.database(w.prefix).lines = [...ROWS];
    for (const c of docker.containers) c.status = "exited";
    const plan = await runInstall(w.context(docker), w.options(r2, { dryRun: true }));
    assertEquals(plan.plan!.database.backup?.startPostgres, true);
    assertMatch(plan.plan!.database.notes.join("\n"), /postgres will be started alone/);

    docker.database(w.prefix).failDump = true;
    docker.calls.length = 0;
    await assertRejects(() => runInstall(w.context(docker), w.options(r2)), InstallError);
    assertEquals(writes(docker), [
      "docker compose … up -d --no-build --pull never --no-deps postgres",
      "docker stop",
    ]);
    assert(docker.containers.every((c) => c.status !== "running"), "left as it was: stopped");

    docker.database(w.prefix).failDump = false;
    docker.calls.length = 0;
    const rep = await runInstall(w.context(docker), w.options(r2));
    assertEquals(await Deno.readTextFile(rep.database!.backup!.path), fakeDump(ROWS));
    assert(
      at(docker, /--no-deps postgres/) < at(docker, / pg_dump /) &&
        at(docker, / pg_dump /) < at(docker, /^docker load/),
      docker.lines().join("\n"),
    );
  },
);

/** rollbackTo() of the journal's current release to the one before, as `rollback` does. */
async function rollBack(
  w: UnitWorld,
  docker: ScriptedDocker,
  database: Parameters<typeof rollbackTo>[2]["database"],
) {
  const j = await readJournal(w.stateDir);
  const from = j.current!;
  const cur = j.releases[from];
  const r = await rollbackTo(w.context(docker), j, {
    waitTimeoutSec: 30,
    stack: { ...cur.stack!, readiness: [] },
    from,
    to: from - 1,
    database,
  });
  await writeJournal(w.stateDir, j);
  return r;
}

seamTest(
  "rollback restores the backup taken before the upgrade it undoes, after backing up what it replaces",
  async (w) => {
    const r1 = await w.release("1.0.0", w.images("1"));
    const r2 = await w.release("1.1.0", w.images("2"));
    const docker = new ScriptedDocker();
    // Secrets in the root .env (as 0.2 keeps them there): a rollback never rotates them.
    const key = "INTERNAL_VLLM_API_KEY=" + "ab".repeat(32);
    await Deno.writeTextFile(`${w.cortexDir}/.env`, `${key}\nSESSION_SECRET=${"cd".repeat(32)}\n`);
    await runInstall(w.context(docker), w.options(r1));
    const db = docker.database(w.prefix);
    db.lines = [...ROWS];
    const up = await runInstall(w.context(docker), w.options(r2));
    // Under 1.1.0 the database changes (a migration, new rows).
    const later = ["INSERT INTO public.schema VALUES (2);"];
    db.lines = [...later];

    docker.calls.length = 0;
    const r = await rollBack(w, docker, { backupFirst: { stateDir: w.stateDir } });
    assertEquals(db.lines, ROWS, "the database as 1.0.0 left it");
    assertEquals(r.database.restored?.path, up.database!.backup!.path);
    // What was replaced is not lost: it was backed up first.
    assertEquals(await Deno.readTextFile(r.database.backupFirst!.path), fakeDump(later));
    assertEquals(writes(docker), [
      "docker stop",
      "docker tag",
      "docker tag",
      "docker tag",
      "docker compose … up -d --no-build --pull never --no-deps postgres",
      "docker compose … up -d --no-build --pull never",
    ]);
    // The backup first, then the restore, while only postgres ran (the gateway was stopped).
    assert(at(docker, /^docker stop/) < at(docker, / pg_dump /), "stopped before the dump");
    assertEquals(r.database.events.map((e) => e.kind), ["backup", "restore"]);
    const rootEnv = await Deno.readTextFile(`${w.cortexDir}/.env`);
    assertMatch(rootEnv, new RegExp(`^${key}$`, "m"));
    assertMatch(rootEnv, new RegExp(`^SESSION_SECRET=${"cd".repeat(32)}$`, "m"));
  },
);

seamTest(
  "a damaged backup refuses the rollback before anything changes (exit 3); a failed restore says what runs (exit 6)",
  async (w) => {
    const r1 = await w.release("1.0.0", w.images("1"));
    const r2 = await w.release("1.1.0", w.images("2"));
    const docker = new ScriptedDocker();
    await runInstall(w.context(docker), w.options(r1));
    docker.database(w.prefix).lines = [...ROWS];
    const up = await runInstall(w.context(docker), w.options(r2));
    const path = up.database!.backup!.path;
    const good = await Deno.readFile(path);
    await Deno.writeFile(path, good.map((b, i) => i === 10 ? b ^ 1 : b));
    docker.calls.length = 0;
    const e = await assertRejects(() => rollBack(w, docker, {}), InstallError);
    assertEquals(e.exitCode, ExitCode.Preflight);
    assertMatch(e.message, /has sha256 .* was written; nothing was changed/);
    assertMatch(e.hint!, /--skip-db/);
    assertEquals(writes(docker), []);

    await Deno.writeFile(path, good);
    docker.database(w.prefix).failRestore = true;
    const f = await assertRejects(() => rollBack(w, docker, {}), InstallError);
    assertEquals(f.exitCode, ExitCode.Stack);
    assertMatch(f.message, /Cannot restore the database of Cortex 1\.0\.0 from .*: /);
    assertMatch(f.hint!, /postgres runs \(container \w+\) with the database as it was/);
    assertMatch(f.hint!, /the gateway and the other services are stopped/);
    assertMatch(f.detail!, /docker exec -i \w+ psql -X -1 -v ON_ERROR_STOP=1 -U postgres/);
    assertEquals(docker.database(w.prefix).restores, 0);
  },
);

seamTest(
  "--skip-db: no backup, and the older backup of the release left is dropped (a rollback keeps the database)",
  async (w) => {
    const r1 = await w.release("1.0.0", w.images("1"));
    const r2 = await w.release("1.1.0", w.images("2"));
    const docker = new ScriptedDocker();
    await runInstall(w.context(docker), w.options(r1));
    await runInstall(w.context(docker), w.options(r2));
    await rollBack(w, docker, {});
    assert((await readJournal(w.stateDir)).releases[0].dbBackup, "1.0.0 has its backup");
    const dumps = docker.database(w.prefix).dumps;
    docker.database(w.prefix).lines = ["INSERT INTO public.newer VALUES (1);"];

    const rep = await runInstall(w.context(docker), w.options(r2, { skipDb: true }));
    assertEquals(docker.database(w.prefix).dumps, dumps, "no dump");
    assertMatch(rep.plan!.database.notes.join("\n"), /--skip-db: no backup/);
    const j = await readJournal(w.stateDir);
    assertEquals(j.releases[0].dbBackup, undefined, "the stale backup is not for this upgrade");
    const r = await rollBack(w, docker, {});
    assertMatch(r.database.skipped!, /no backup was taken before Cortex 1\.1\.0 was installed/);
    assertEquals(docker.database(w.prefix).lines, ["INSERT INTO public.newer VALUES (1);"]);
  },
);

seamTest(
  "--keep-backups: a successful run keeps the N newest and always the one the rollback needs",
  async (w) => {
    const docker = new ScriptedDocker();
    const rels = [];
    for (const v of ["1.0.0", "1.1.0", "1.2.0", "1.3.0"]) {
      rels.push(await w.release(v, w.images(v)));
    }
    await runInstall(w.context(docker), w.options(rels[0]));
    for (const [i, r] of rels.slice(1).entries()) {
      // A second later each time: distinct stamps in the names.
      await w.clock.sleep(1000);
      const rep = await runInstall(
        w.context(docker),
        w.options(r, { keepBackups: i === 2 ? 0 : 3 }),
      );
      if (i === 2) assertEquals(rep.database?.pruned?.length, 2);
    }
    const j = await readJournal(w.stateDir);
    const need = j.releases[2].dbBackup!.path.split("/").pop()!;
    assertEquals(await files(backupsDir(w.stateDir)), [need, `${need}.sha256`]);
  },
);

/** A real-looking dump of the fake database's lines. */
const DUMP = fakeDump(["INSERT INTO public.users VALUES (1, 'from the export');"]);

seamTest(
  "an Admin-UI export's dump is restored on a fresh host after postgres starts and before the gateway; never again",
  async (w) => {
    const r = await w.adminRelease("1.0.0", w.images("1"), DUMP);
    const docker = new ScriptedDocker();
    const o = (more: Partial<InstallOptions> = {}) => w.options(r, more);
    const plan = await runInstall(w.context(docker), o({ dryRun: true }));
    assertEquals(plan.plan!.database.restore?.file, "db/cortex.sql");
    const rep = await runInstall(w.context(docker), o());
    const db = docker.database(w.prefix);
    assertEquals(db.lines, ["INSERT INTO public.users VALUES (1, 'from the export');"]);
    assertEquals(rep.database?.restored?.sha256, sha256Hex(DUMP));
    assert(
      at(docker, /--no-deps postgres/) < at(docker, / psql .* -f -/) &&
        at(docker, / psql .* -f -/) < at(docker, /up -d --no-build --pull never$/),
      docker.lines().join("\n"),
    );

    // A second run: the quick re-run; a full one (other models dir) plans no restore either.
    db.lines.push("INSERT INTO public.users VALUES (2, 'written since');");
    await runInstall(w.context(docker), o());
    const full = await runInstall(w.context(docker), o({ modelsDir: `${w.root}/other-models` }));
    assertEquals(full.outcome, "installed");
    assertEquals(full.plan!.database.restore, undefined);
    assertMatch(full.plan!.database.notes.join("\n"), /is installed and keeps its database/);
    assertEquals(db.restores, 1);
    assertEquals(db.lines.length, 2, "the row written since is kept");

    // --restore-db: the database holds data, so it is backed up first, then replaced.
    const forced = await runInstall(w.context(docker), o({ restoreDb: true }));
    assertEquals(db.restores, 2);
    assertEquals(
      await Deno.readTextFile(forced.database!.backupBeforeRestore!.path),
      fakeDump([
        "INSERT INTO public.users VALUES (1, 'from the export');",
        "INSERT INTO public.users VALUES (2, 'written since');",
      ]),
    );
  },
);

seamTest(
  "a fresh host whose database already holds data is never overwritten without --restore-db",
  async (w) => {
    const r = await w.adminRelease("1.0.0", w.images("1"), DUMP);
    const docker = new ScriptedDocker();
    // Cortex installed by hand before: its volume holds data, its containers are down.
    docker.database(w.prefix).lines = [...ROWS];
    const e = await assertRejects(() => runInstall(w.context(docker), w.options(r)), InstallError);
    // Found once postgres started (after the load): exit 7, nothing of the database changed.
    assertEquals(e.exitCode, ExitCode.Partial);
    assertMatch(
      e.message,
      /already holds data \(public\.models, public\.users\); it was not changed/,
    );
    assertMatch(e.hint!, /--restore-db .* or --skip-db/);
    assertEquals(docker.database(w.prefix).lines, ROWS);
    assertEquals(at(docker, /up -d --no-build --pull never$/), -1, "the gateway never started");

    // With postgres running, the plan already knows: exit 3 before anything.
    docker.calls.length = 0;
    const e3 = await assertRejects(() => runInstall(w.context(docker), w.options(r)), InstallError);
    assertEquals(e3.exitCode, ExitCode.Preflight);
    assertEquals(writes(docker), []);

    const skip = await runInstall(w.context(docker), w.options(r, { skipDb: true }));
    assertEquals(skip.outcome, "installed");
    assertEquals(docker.database(w.prefix).lines, ROWS);
  },
);

seamTest(
  "a dump cut short, or one with --skip-start: refused before anything changes",
  async (w) => {
    const cut = DUMP.slice(0, DUMP.indexOf("-- PostgreSQL database dump complete"));
    const r = await w.adminRelease("1.0.0", w.images("1"), cut);
    const docker = new ScriptedDocker();
    const e = await assertRejects(() => runInstall(w.context(docker), w.options(r)), InstallError);
    assertEquals(e.exitCode, ExitCode.Integrity);
    assertMatch(e.message, /db\/cortex\.sql: it does not end with pg_dump's closing line/);
    assertEquals(writes(docker), []);

    const r2 = await w.adminRelease("1.0.1", w.images("1"), DUMP);
    const s = await assertRejects(
      () => runInstall(w.context(docker), w.options(r2, { skipStart: true })),
      InstallError,
      "with --skip-start",
    );
    assertEquals(s.exitCode, ExitCode.Preflight);
    assertEquals(writes(docker), []);
  },
);

seamTest(
  "a run stopped right after the restore committed: the re-run finds the dump in the database and does not restore again",
  async (w) => {
    const r = await w.adminRelease("1.0.0", w.images("1"), DUMP);
    const docker = new ScriptedDocker();
    await runInstall(w.context(docker), w.options(r));
    const db = docker.database(w.prefix);
    db.lines.push("INSERT INTO public.users VALUES (2, 'the gateway wrote it');");
    // As if killed before the journal recorded anything: no journal, the stack down.
    await Deno.remove(`${w.stateDir}/journal.json`);
    for (const c of docker.containers) c.status = "exited";
    const rep = await runInstall(w.context(docker), w.options(r));
    assertEquals(rep.database?.alreadyRestored, true);
    assertEquals(db.restores, 1);
    assertEquals(db.lines.length, 2);
    // With postgres up, the plan itself says so.
    await Deno.remove(`${w.stateDir}/journal.json`);
    const plan = await runInstall(w.context(docker), w.options(r, { dryRun: true }));
    assertEquals(plan.plan!.database.restore, undefined);
    assertMatch(plan.plan!.database.notes.join("\n"), /already holds db\/cortex\.sql/);
  },
);
