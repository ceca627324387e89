import assert from "node:assert/strict";
import { assertEquals, assertMatch, assertRejects } from "../../test/support/assert.ts";
import { ScriptedDocker } from "../../test/support/scripted_docker.ts";
import { UnitWorld } from "../../test/support/install_world.ts";
import { compareReleases, defaultProfiles } from "./preflight.ts";
import { runInstall } from "./install.ts";
import { parseProfiles, parseWaitTimeout } from "../cli/install.ts";
import { ExitCode, InstallError, UsageError } from "../errors.ts";
import { COMPOSE_OVERRIDE } from "../layout.ts";
import { currentRelease, readJournal } from "../state/journal.ts";
import { readAudit } from "../state/audit.ts";
import { sha256Hex } from "../hash.ts";
import { basename } from "node:path";

Deno.test("compareReleases() orders Cortex versions numerically", async (t) => {
  const cases: [string, string, number][] = [
    ["0.1.1", "0.1.1", 0],
    ["0.1.2", "0.1.1", 1],
    ["0.10.0", "0.9.1", 1],
    ["v0.2.0", "0.1.9", 1],
    ["0.1", "0.1.0", 0],
    ["0.1.1", "0.2.0", -1],
  ];
  for (const [a, b, want] of cases) {
    await t.step(`${a} vs ${b}`, () => assert.equal(compareReleases(a, b), want));
  }
});

Deno.test("defaultProfiles(): gpu only with a GPU and the nvidia runtime, linux on Linux", () => {
  assert.deepEqual(defaultProfiles({ state: "ok", nvidiaRuntime: true }, "linux"), [
    "gpu",
    "linux",
  ]);
  assert.deepEqual(defaultProfiles({ state: "ok", nvidiaRuntime: false }, "linux"), ["linux"]);
  assert.deepEqual(defaultProfiles({ state: "none", nvidiaRuntime: true }, "linux"), ["linux"]);
  assert.deepEqual(defaultProfiles({ state: "ok", nvidiaRuntime: true }, "darwin"), ["gpu"]);
});

Deno.test("--wait-timeout and --profiles are validated", () => {
  assert.equal(parseWaitTimeout("30"), 30);
  for (const bad of ["0", "-1", "1.5", "soon"]) {
    assert.throws(() => parseWaitTimeout(bad), UsageError, bad);
  }
  assert.deepEqual(parseProfiles("gpu, linux"), ["gpu", "linux"]);
  assert.deepEqual(parseProfiles(""), []);
  assert.equal(parseProfiles(undefined), undefined);
  assert.throws(() => parseProfiles("gpu;rm"), UsageError);
});

// ---- runInstall() through the Docker seam: no engine, no network, no GPU --------------------

/** A test in a fresh UnitWorld (temp dir, scripted engine, fake clock), removed afterwards. */
function seamTest(name: string, fn: (w: UnitWorld) => Promise<void>): void {
  Deno.test({
    name,
    sanitizeResources: false,
    sanitizeOps: false,
    fn: () => withWorld(fn),
  });
}

async function withWorld(fn: (w: UnitWorld) => Promise<void>): Promise<void> {
  const w = await UnitWorld.create();
  try {
    await fn(w);
  } finally {
    await w.cleanup();
  }
}

/** The calls that change the engine (load, tag, rmi, compose up/down), in order. */
function writes(d: ScriptedDocker): string[] {
  return d.lines().filter((l) =>
    /^docker (load|tag|rmi|stop|start)\b/.test(l) ||
    / (up|down)\b/.test(l) && l.startsWith("docker compose")
  ).map((l) =>
    l.replace(/ --project-name .* (up|down)\b/, " … $1").replace(/^(docker (stop|start)) .*/, "$1")
  );
}

seamTest(
  "runInstall() through the seam: loads, retags, writes settings, starts the stack, " +
    "records the release",
  async (w) => {
    const r = await w.release("1.0.0", w.images("1"));
    const [gw, pg] = r.tars;
    const docker = new ScriptedDocker();
    const report = await runInstall(w.context(docker), w.options(r));

    assertEquals(report.outcome, "installed");
    assertEquals(report.images?.images.map((i) => [i.file, i.verdict]), [
      [gw.file, "loaded"],
      [pg.file, "loaded"],
    ]);
    assertEquals(writes(docker), [
      "docker load",
      "docker load",
      `docker tag ${w.prefix}/postgres:16 ${w.prefix}/postgres:latest`,
      "docker compose … up -d --no-build --pull never",
    ]);
    // postgres shares the gateway's base layer, which the first load just brought: sent empty.
    const sent = docker.callsOf("load").map((c) => c.stdinBytes ?? 0);
    assertEquals(sent[0], gw.size);
    assert(sent[1] < pg.size && sent[1] > 0, `${sent[1]} of ${pg.size}`);
    assertEquals(w.probed, [], "forced offline: no network probe");
    assertEquals(docker.idOf(`${w.prefix}/cortex-gateway:1`), gw.imageId);
    assertEquals(docker.idOf(`${w.prefix}/postgres:latest`), pg.imageId);
    assertEquals(docker.containers.map((c) => [c.service, c.health]), [
      ["gateway", "healthy"],
      ["postgres", "healthy"],
    ]);

    const env = await Deno.readTextFile(`${w.cortexDir}/backend/.env`);
    assertMatch(env, /^# the operator's\nEXISTING=1\n/);
    assertMatch(env, /\nOFFLINE_MODE=True\n/);
    const override = await Deno.readTextFile(`${w.cortexDir}/${COMPOSE_OVERRIDE}`);
    assertMatch(override, new RegExp(`image: ${w.prefix}/postgres:latest`));

    const j = await readJournal(w.stateDir);
    assertEquals(j.inProgress, undefined);
    assertEquals([j.lastRun?.outcome, j.lastRun?.exitCode], ["ok", 0]);
    const cur = currentRelease(j)!;
    assertEquals([cur.release, cur.outcome], ["1.0.0", "installed"]);
    assertEquals(cur.images, {
      [`${w.prefix}/cortex-gateway:1`]: gw.imageId,
      [`${w.prefix}/postgres:16`]: pg.imageId,
      [`${w.prefix}/postgres:latest`]: pg.imageId,
    });
    assertEquals(Object.keys(cur.envFiles).sort(), [
      `${w.cortexDir}/.env`,
      `${w.cortexDir}/backend/.env`,
      `${w.cortexDir}/${COMPOSE_OVERRIDE}`,
    ]);
    const audit = await readAudit(w.stateDir);
    assertEquals(audit.entries.map((e) => [e.outcome, e.exitCode, e.user]), [[
      "ok",
      0,
      "tester",
    ]]);
  },
);

seamTest(
  "runInstall(): a load that fails half way is undone; the journal keeps the run " +
    "unfinished; exit 5",
  async (w) => {
    const r = await w.release("1.0.0", w.images("1"));
    const [gw, pg] = r.tars;
    // The second load (postgres, critical, its shared base layer sent empty) and its retry
    // with the full tar: the engine reads 1 KiB, commits the image's layers, then dies.
    const docker = new ScriptedDocker({
      failLoad: (n) => n >= 1 ? { afterBytes: 1024, leaves: [pg.imageId] } : undefined,
    });
    const e = await assertRejects(
      () => runInstall(w.context(docker), w.options(r)),
      InstallError,
      `Cannot load image "${pg.file}": docker load exited with code 1`,
    );
    assertEquals([e.exitCode, e.step], [ExitCode.Docker, "load"]);
    assertMatch(e.detail ?? "", /unexpected EOF/);
    assertEquals(writes(docker), [
      "docker load",
      "docker load",
      `docker rmi --no-prune ${pg.imageId}`,
      "docker load",
      `docker rmi --no-prune ${pg.imageId}`,
    ]);
    assertEquals(docker.callsOf("load").map((c) => c.stdinBytes), [gw.size, 1024, 1024]);
    assertEquals(docker.idOf(pg.imageId), undefined, "what the failed load created is gone");
    assertEquals(
      docker.idOf(`${w.prefix}/cortex-gateway:1`),
      gw.imageId,
      "the good load is kept",
    );
    assertEquals(docker.containers, []);

    const j = await readJournal(w.stateDir);
    assertEquals(j.inProgress?.steps, { verify: "done", models: "done", load: "running" });
    assertEquals([j.lastRun?.outcome, j.lastRun?.exitCode], ["failed", ExitCode.Docker]);
    assertEquals(j.releases, []);
    assertEquals(j.loaded, {}, "nothing recorded as loaded by a failed step");
    assertEquals(
      await Deno.readTextFile(`${w.cortexDir}/backend/.env`),
      "# the operator's\nEXISTING=1\n",
      "no settings written",
    );
    const audit = await readAudit(w.stateDir);
    assertEquals(audit.entries.map((a) => [a.outcome, a.exitCode]), [["failed", 5]]);
  },
);

seamTest(
  "runInstall(): an upgrade runs the newly shipped image under a reused tag (:latest), not the " +
    "engine's old one",
  async (w) => {
    const r1 = await w.release("1.0.0", w.images("1"));
    const r2 = await w.release("1.1.0", w.images("2"));
    const docker = new ScriptedDocker();
    await runInstall(w.context(docker), w.options(r1));
    const latest = `${w.prefix}/postgres:latest`;
    assertEquals(docker.idOf(latest), r1.tars[1].imageId);
    const report = await runInstall(w.context(docker), w.options(r2));
    assertEquals(report.retags, [{
      service: "postgres",
      from: `${w.prefix}/postgres:16`,
      to: latest,
    }]);
    assertEquals(docker.idOf(latest), r2.tars[1].imageId);
    assertEquals(
      docker.containers.map((c) => [c.service, c.imageId]),
      [["gateway", r2.tars[0].imageId], ["postgres", r2.tars[1].imageId]],
    );
    const j = await readJournal(w.stateDir);
    assertEquals(currentRelease(j)?.images[latest], r2.tars[1].imageId);
  },
);

seamTest(
  "runInstall(): an upgrade whose stack never gets healthy is rolled back; exit 6",
  async (w) => {
    const r1 = await w.release("1.0.0", w.images("1"));
    const r2 = await w.release("1.1.0", w.images("2"));
    // The new gateway changes the database as it starts (a migration) and never gets healthy.
    const docker: ScriptedDocker = new ScriptedDocker({
      onStart: (c) => {
        if (c.imageId === r2.tars[0].imageId) {
          docker.database(c.project).lines = ["INSERT INTO public.schema VALUES (2);"];
        }
      },
    });
    await runInstall(w.context(docker), w.options(r1));
    const rows = ["INSERT INTO public.schema VALUES (1);", "INSERT INTO public.users VALUES (7);"];
    docker.database(w.prefix).lines = [...rows];
    const env1 = await Deno.readTextFile(`${w.cortexDir}/backend/.env`);
    assertMatch(env1, /\nCIT_RELEASE=1\.0\.0\n/);
    docker.neverHealthy.add(r2.tars[0].imageId);
    docker.calls.length = 0;
    const slept0 = w.clock.sleeps.length;

    const e = await assertRejects(
      () => runInstall(w.context(docker), w.options(r2, { waitTimeoutSec: 20 })),
      InstallError,
      "The host was rolled back to Cortex 1.0.0, its database restored from",
    );
    assertEquals(e.exitCode, ExitCode.Stack);
    assertMatch(e.message, /service "gateway" is not up after 20 s: health: starting/);
    const [gw1, pg1] = r1.tars;
    assertEquals(writes(docker), [
      "docker load",
      "docker load",
      // The new postgres:16 wins over the old release's postgres:latest in the engine.
      `docker tag ${w.prefix}/postgres:16 ${w.prefix}/postgres:latest`,
      "docker compose … up -d --no-build --pull never",
      // The rollback: everything but postgres stopped, the previous release's image IDs under
      // their refs, its postgres alone (the restore), then its stack.
      "docker stop",
      `docker tag ${gw1.imageId} ${w.prefix}/cortex-gateway:1`,
      `docker tag ${pg1.imageId} ${w.prefix}/postgres:16`,
      `docker tag ${pg1.imageId} ${w.prefix}/postgres:latest`,
      "docker compose … up -d --no-build --pull never --no-deps postgres",
      "docker compose … up -d --no-build --pull never",
    ]);
    // The database as it was before the upgrade: the backup taken first, restored after.
    const db = docker.database(w.prefix);
    assertEquals(db.lines, rows);
    assertEquals([db.dumps, db.restores], [1, 1]);
    // The backup was taken before anything changed: before the first load.
    const order = docker.lines();
    const dumpAt = order.findIndex((l) => / pg_dump /.test(l));
    assert(dumpAt >= 0 && dumpAt < order.findIndex((l) => l === "docker load"), "dump first");
    // The wait is bounded by the clock, not by real time: it slept 20 s of fake time in all.
    const slept = w.clock.sleeps.slice(slept0);
    assertEquals(slept.reduce((s, ms) => s + ms, 0), 20_000);
    assert(slept.length <= 20, `${slept.length} polls`);
    assertEquals(docker.containers.map((c) => [c.service, c.imageId, c.health]), [
      ["gateway", gw1.imageId, "healthy"],
      ["postgres", pg1.imageId, "healthy"],
    ]);
    assertEquals(await Deno.readTextFile(`${w.cortexDir}/backend/.env`), env1, "restored");

    const j = await readJournal(w.stateDir);
    assertEquals(j.releases.map((x) => [x.release, x.outcome]), [
      ["1.0.0", "installed"],
      ["1.1.0", "rolled-back"],
    ]);
    assertEquals(currentRelease(j)?.release, "1.0.0");
    assertEquals([j.lastRun?.outcome, j.lastRun?.exitCode], ["failed", ExitCode.Stack]);
    assertEquals(j.inProgress?.steps.stack, "running");
    // The backup is recorded on the release returned to, for the upgrade it preceded; the journal
    // and the audit log say what was backed up and restored.
    const b = j.releases[0].dbBackup!;
    assertEquals(b.forBundle, j.releases[1].bundleDigest);
    assertEquals(b.sha256, sha256Hex(await Deno.readFile(b.path)));
    assertEquals(await Deno.readTextFile(`${b.path}.sha256`), `${b.sha256}  ${basename(b.path)}\n`);
    assertEquals(j.database?.events.map((x) => [x.kind, x.sha256]), [
      ["backup", b.sha256],
      ["restore", b.sha256],
    ]);
    const audit = (await readAudit(w.stateDir)).entries.at(-1)!;
    assertEquals(audit.database?.map((x) => [x.kind, x.path]), [
      ["backup", b.path],
      ["restore", b.path],
    ]);
  },
);

seamTest(
  "runInstall(): a quick re-run reads no tar and loads nothing; only the stack is checked",
  async (w) => {
    const r = await w.release("1.0.0", w.images("1"));
    const docker = new ScriptedDocker();
    await runInstall(w.context(docker), w.options(r));
    // Garbage in every tar (the checksums, hence the bundle digest, unchanged): a re-run that
    // read a tar would fail on it, as the control below shows.
    for (const t of r.tars) {
      await Deno.writeFile(`${r.dir}/${t.file}`, new Uint8Array(t.size).fill(0x5a));
    }
    docker.calls.length = 0;
    const again = await runInstall(w.context(docker), w.options(r));
    assertEquals(again.outcome, "unchanged");
    assertEquals(docker.lines().map((l) => l.split(" ").slice(0, 2).join(" ")), [
      "docker images",
      "docker ps",
      "docker inspect",
    ]);
    assertEquals((await readJournal(w.stateDir)).lastRun?.outcome, "ok");

    // Control: with another input (a models dir) the full install runs and reads the tars.
    const e = await assertRejects(
      () => runInstall(w.context(docker), w.options(r, { modelsDir: `${w.root}/models2` })),
      InstallError,
      "Cannot read image tar",
    );
    assertEquals(e.exitCode, ExitCode.Integrity);
  },
);

Deno.test({
  name: "runInstall(): a settings failure after the images were loaded exits 7, not 3",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async (t) => {
    const cases = [
      {
        name: "the root .env's place taken by a folder",
        meddle: (w: UnitWorld) => Deno.mkdir(`${w.cortexDir}/.env`),
        message: /^Cannot (read|write) ".*\/Cortex\/\.env"/,
      },
      {
        name: "backend/.env edited while the install runs",
        meddle: (w: UnitWorld) =>
          Deno.writeTextFile(`${w.cortexDir}/backend/.env`, "EDITED=1\n", { append: true }),
        message: /backend\/\.env": it changed while the installer was running/,
      },
    ];
    for (const c of cases) {
      await t.step(c.name, () =>
        withWorld(async (w) => {
          const r = await w.release("1.0.0", w.images("1"));
          const docker = new ScriptedDocker();
          const ctx = w.context(docker);
          // Once the images are in (the retag), the host is changed: then the file trouble.
          ctx.docker = {
            run: async (args, opts) => {
              const res = await docker.run(args, opts);
              if (args[0] === "tag") await c.meddle(w);
              return res;
            },
          };
          const e = await assertRejects(() => runInstall(ctx, w.options(r)), InstallError);
          assertMatch(e.message, c.message);
          assertEquals([e.exitCode, e.step], [ExitCode.Partial, "settings"]);
          const j = await readJournal(w.stateDir);
          assertEquals([j.lastRun?.outcome, j.lastRun?.exitCode], ["failed", 7]);
          assertEquals(j.inProgress?.steps.settings, "running");
          assertEquals(j.inProgress?.steps.load, "done");
        }));
    }
  },
});
