/**
 * Journeys: Cortex 0.1 -> 0.2 in place (issue 9 §3) and the registration of a 0.2 bundle's models
 * (§5), on real parts: Debian's PostgreSQL 15 as the stack's postgres (postgres_image.ts), the
 * gateway stand-in (gateway_image.ts) as Cortex's gateway, bundles built with real `docker save`,
 * Compose v2, the CLI as a subprocess. One host goes through every step in order:
 *
 *   install 0.1.1 (script bundle; a row written under it) -> the operator updates the checkout
 *   to 0.2 in place (0.2's compose file and versions.env replace 0.1's; backend/.env stays) ->
 *   `plan` says it is a 0.1 -> 0.2 upgrade and what is carried -> install a 0.2 bundle whose
 *   gateway migrates and never gets healthy: rolled back, the 0.1 gateway runs again from its
 *   compose copy in the state dir, on its restored 0.1 schema, with the row (exit 6) -> install
 *   the good 0.2 bundle: backup, settings carried, 0.1 stopped, 0.2 healthy after its migration,
 *   the row kept, the bundle's model registered (created) -> the operator edits the root .env and
 *   runs install again: the model is skipped by Cortex; an unchanged re-run asks Cortex nothing.
 * A second host, where 0.1 was started by hand (`docker compose up`, no journal), is upgraded.
 *
 * What the stand-in's parts stand for: the `0.1` build = Cortex 0.1.1's gateway (create_all; it
 * refuses a schema Alembic 0002 migrated, so it starts after the rollback only because the
 * database was restored); `0.2` = Cortex 0.2.0's gateway (Alembic 0001 stamp + irreversible 0002 at
 * start, /health ok only after it; POST /auth/login with the bootstrap admin; the bundles API scan,
 * import with copy_files/load_images/conflict and the job status, which create the model record
 * in the real database); `0.2-broken` = a 0.2 build that migrates and then never gets healthy.
 */
import { assert, assertEquals, assertMatch } from "../support/assert.ts";
import { fileSha256, runCli } from "../support/fixtures.ts";
import {
  buildDbImages,
  DB_SECRET,
  type DbImages,
  type DbWorld,
  newDbWorld,
  scriptBundle,
} from "../support/db_world.ts";
import { buildGatewayImage } from "../support/gateway_image.ts";
import { assemble02, DEFAULT_MODEL, type SavedTar, tarName02 } from "../support/bundle02.ts";
import { runDocker } from "../../src/docker.ts";
import { envRecord, parseEnv } from "../../src/host/dotenv.ts";

const opts = { sanitizeResources: false, sanitizeOps: false };
// deno-lint-ignore no-explicit-any
type Json = any;

const ROW = "Row written under 0.1.1";
/** The operator's token and tuning in 0.1's backend/.env: carried into 0.2's root .env. */
const TOKEN = "cit-token-" + crypto.randomUUID();
const RPS = "42";

async function must(p: Promise<{ code: number; stdout: string; stderr: string }>, what: string) {
  const r = await p;
  if (r.code !== 0) throw new Error(`${what} failed (${r.code}): ${r.stderr || r.stdout}`);
  return r.stdout.trim();
}

/** The 0.2 gateway builds, tagged `<prefix>/cortex-gateway:0.2.0` as 0.2's compose runs it. */
async function gateways02(img: DbImages) {
  const ref = `${img.prefix}/cortex-gateway:0.2.0`;
  const out: Record<"good" | "broken", { id: string; tar: string }> = {} as never;
  for (const kind of ["broken", "good"] as const) {
    const g = await buildGatewayImage({
      flavour: "0.2",
      ref,
      label: img.label,
      ...(kind === "broken" ? { env: { STANDIN_FAIL: "never-healthy" } } : {}),
    });
    const tar = `${img.work}/gateway-02-${kind}.tar`;
    await must(runDocker(["save", "-o", tar, ref]), `docker save gateway 0.2 ${kind}`);
    out[kind] = { id: g.id, tar };
  }
  return { ref, ...out };
}

/** The policy set of both lines, images under the test prefix, readiness on the stand-in's port. */
async function policySet(img: DbImages, port: number): Promise<string> {
  const set = JSON.parse(
    await Deno.readTextFile(new URL("../../assets/manifest.json", import.meta.url)),
  );
  for (const line of set.lines) {
    line.images = line.images
      .filter((i: Json) => ["gateway", "postgres"].includes(i.role))
      .map((i: Json) => ({ ...i, repository: `${img.prefix}/${i.repository}` }));
    line.readiness = [{
      service: "gateway",
      url: `http://127.0.0.1:${port}/health`,
      expectJson: { status: "ok" },
    }];
    line.pins = {};
  }
  return JSON.stringify(set, null, 2);
}

/**
 * Cortex 0.2's compose file as this test host runs it (host networking, loopback ports, the
 * stand-ins' images): the gateway reads only `environment:` interpolated from the root .env, with
 * 0.2's `:?` keys, mounts the models and exports dirs, and CORTEX_TRANSFER_DIRS (facts §3, §4, §6).
 */
function compose02(img: DbImages, w: DbWorld, gwRef: string): string {
  const { user, db, password } = w.pg;
  return `# cortex-install journeys: Cortex 0.2's services on host networking, loopback ports
name: cortex
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
    image: ${gwRef}
    network_mode: host
    environment:
      DATABASE_URL: postgresql+asyncpg://${user}:${password}@127.0.0.1:${w.ports.postgres}/${db}
      STANDIN_PORT: "${w.ports.gateway}"
      STANDIN_JOB_DELAY_MS: "100"
      INTERNAL_VLLM_API_KEY: \${INTERNAL_VLLM_API_KEY:?set INTERNAL_VLLM_API_KEY in .env}
      SESSION_SECRET: \${SESSION_SECRET:?set SESSION_SECRET in .env}
      ADMIN_BOOTSTRAP_USERNAME: \${ADMIN_BOOTSTRAP_USERNAME:-admin}
      ADMIN_BOOTSTRAP_PASSWORD: \${ADMIN_BOOTSTRAP_PASSWORD:?set ADMIN_BOOTSTRAP_PASSWORD in .env}
      CORS_ALLOW_ORIGINS: \${CORS_ALLOW_ORIGINS:?set CORS_ALLOW_ORIGINS in .env}
      OFFLINE_MODE: \${OFFLINE_MODE:-false}
      RATE_LIMIT_RPS: \${RATE_LIMIT_RPS:-10}
      CORTEX_MODELS_DIR: /var/cortex/models
      CORTEX_TRANSFER_DIRS: /var/cortex/exports
    volumes:
      - \${CORTEX_MODELS_DIR:-/var/cortex/models}:/var/cortex/models:rw
      - \${CORTEX_EXPORT_DIR:-${w.root}/exports}:/var/cortex/exports
    healthcheck:
      test: ["CMD-SHELL", "curl -fsS http://127.0.0.1:${w.ports.gateway}/health"]
      interval: 3s
      timeout: 3s
      retries: 40
    depends_on:
      postgres:
        condition: service_healthy
volumes:
  postgres_data:
`;
}

/** A Cortex 0.2 Admin-UI bundle of postgres and a 0.2 gateway build, with DEFAULT_MODEL. */
async function bundle02(
  img: DbImages,
  dir: string,
  gwRef: string,
  gw: { id: string; tar: string },
) {
  await Deno.mkdir(`${dir}/images`, { recursive: true });
  const tars: SavedTar[] = [];
  for (
    const [ref, src, id, role] of [
      [img.pgRef, img.pgTar, img.pgId, "infra"],
      [gwRef, gw.tar, gw.id, "program"],
    ]
  ) {
    const file = tarName02(ref);
    await Deno.link(src, `${dir}/${file}`);
    tars.push({ ref, role, file, imageId: id, sizeBytes: 0, digests: [] });
  }
  await assemble02(dir, { variant: "admin-ui", models: [DEFAULT_MODEL] }, tars);
  return dir;
}

/** The operator updates the checkout to 0.2 in place: tracked files replaced, backend/.env kept. */
async function updateCheckoutTo02(w: DbWorld, text: string) {
  await Deno.writeTextFile(w.composeFile, text);
  await Deno.writeTextFile(`${w.cortexDir}/versions.env`, "CORTEX_VERSION=0.2.0\n");
  // 0.1's backend/.env.prod is tracked and gone from 0.2 (the operator never edited it).
  await Deno.remove(`${w.cortexDir}/backend/.env.prod`);
}

Deno.test({
  name: "0.1 -> 0.2 in place: plan, rollback of a broken 0.2 with the database, the upgrade with " +
    "data and settings kept, models registered once; a hand-installed 0.1 upgraded",
  ...opts,
  fn: async (t) => {
    const t0 = performance.now();
    const img = await buildDbImages(["0.1"]);
    const g02 = await gateways02(img);
    console.error(`images built and saved in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    const w = await newDbWorld(img);
    const hand = await newDbWorld(img);
    const outputs: string[] = [];
    const cli = async (args: string[]) => {
      const r = await runCli(args);
      outputs.push(r.stdout, r.stderr);
      return r;
    };
    const timings: string[] = [];
    const timed = async <T>(what: string, f: () => Promise<T>) => {
      const s = performance.now();
      try {
        return await f();
      } finally {
        timings.push(`${what} ${((performance.now() - s) / 1000).toFixed(1)} s`);
      }
    };
    try {
      for (const x of [w, hand]) {
        await Deno.writeTextFile(x.manifestPath, await policySet(img, x.ports.gateway));
        await Deno.mkdir(`${x.root}/exports`, { recursive: true });
        await Deno.mkdir(`${x.root}/models`, { recursive: true });
      }
      const b01 = await scriptBundle(img, `${w.root}/b-0.1.1`, "0.1.1", "0.1");
      const broken = await bundle02(img, `${w.root}/exports/b-0.2.0-broken`, g02.ref, g02.broken);
      const good = await bundle02(img, `${w.root}/exports/b-0.2.0`, g02.ref, g02.good);
      const onGateway = async (x: DbWorld, id: string) => {
        const g = await x.service("gateway");
        assertEquals(g?.image, id);
        assertEquals(g?.health, "healthy");
        const res = await fetch(`http://127.0.0.1:${x.ports.gateway}/health`);
        assertEquals(await res.json(), { status: "ok" });
      };
      const theRow = async (x: DbWorld) =>
        assertEquals(
          await x.psql("SELECT name FROM models WHERE served_model_name = 'm01'"),
          ROW,
        );
      const alembic = async (x: DbWorld) =>
        await x.psql("SELECT to_regclass('public.alembic_version') IS NULL") === "t"
          ? "none"
          : await x.psql("SELECT version_num FROM alembic_version");
      const writeRow = (x: DbWorld) =>
        x.psql(
          `INSERT INTO models (name, served_model_name, engine_args) VALUES ('${ROW}', 'm01', '--max-model-len 4096')`,
        );

      await t.step("install 0.1.1; a row is written under it", async () => {
        const r = await timed("install 0.1.1", () => cli(w.installArgs(b01)));
        assertEquals(r.code, 0, r.stderr);
        await onGateway(w, img.gateways["0.1"].id);
        await writeRow(w);
        // The operator's settings in 0.1's backend/.env (cortex-install wrote OFFLINE_MODE and
        // CORTEX_MODELS_DIR there; the token and the tuning are the operator's).
        await Deno.writeTextFile(
          `${w.cortexDir}/backend/.env`,
          `INTERNAL_VLLM_API_KEY=${TOKEN}\nRATE_LIMIT_RPS=${RPS}\nREDIS_URL=redis://redis:6379/0\n`,
          { append: true },
        );
      });

      await updateCheckoutTo02(w, compose02(img, w, g02.ref));
      const backendEnv = await Deno.readTextFile(`${w.cortexDir}/backend/.env`);

      await t.step(
        "plan: a 0.1 -> 0.2 upgrade, what is carried, the model registration",
        async () => {
          const planArgs = w.installArgs(good).slice(1).filter((a) => a !== "--yes");
          const r = await cli(["plan", ...planArgs]);
          assertEquals(r.code, 0, r.stderr);
          const p: Json = JSON.parse(r.stdout).plan;
          assertEquals([p.upgrade, p.policy.line, p.from01.release], [true, "0.2", "0.1.1"]);
          assertEquals(p.from01.installedBy, "cortex-install");
          const carried = Object.fromEntries(p.from01.carried.map((c: Json) => [c.key, c.value]));
          assertEquals(carried.RATE_LIMIT_RPS, RPS);
          assertEquals(carried.INTERNAL_VLLM_API_KEY, "***");
          assertEquals(carried.ADMIN_BOOTSTRAP_PASSWORD, "***");
          assert(!("REDIS_URL" in carried), "0.2 does not read REDIS_URL from the root .env");
          assertMatch(p.database.backup.reason, /before the upgrade from 0\.1\.1/);
          assertEquals(p.register.models, [DEFAULT_MODEL.served]);
          assertEquals(p.register.containerPath, "/var/cortex/exports/b-0.2.0");
          const human = await cli(["plan", ...planArgs.filter((a) => a !== "--json")]);
          assertMatch(human.stdout, /upgrade from Cortex 0\.1 to 0\.2 in place: 0\.1\.1/);
          assertMatch(
            human.stdout,
            /carried from .*backend\/\.env into the root \.env: .*RATE_LIMIT_RPS=42/,
          );
          assertMatch(
            human.stdout,
            /Register in Cortex: tiny-chat from \/var\/cortex\/exports\/b-0\.2\.0/,
          );
        },
      );

      await t.step(
        "a 0.2 whose gateway migrates and never gets healthy: rolled back to 0.1 from its compose copy, on its restored schema, with the row (exit 6)",
        async () => {
          const r = await timed(
            "failed 0.2 + rollback",
            () => cli(w.installArgs(broken, ["--wait-timeout", "8"])),
          );
          assertEquals(r.code, 6, r.stderr);
          assertMatch(
            r.stderr,
            /rolled back to Cortex 0\.1\.1, its database restored from \S+before-0\.2\.0\.sql, which is healthy/,
          );
          assertMatch(
            r.stderr,
            /Running Cortex 0\.1\.1 from its compose files kept in \S+\/state\/compose\//,
          );
          await onGateway(w, img.gateways["0.1"].id);
          assertEquals(await alembic(w), "none", "0.1's schema, as create_all made it");
          await theRow(w);
          // The checkout keeps 0.2's compose file (the operator's update); backend/.env untouched.
          assertMatch(await Deno.readTextFile(w.composeFile), /^name: cortex$/m);
          assertEquals(await Deno.readTextFile(`${w.cortexDir}/backend/.env`), backendEnv);
        },
      );

      await t.step(
        "0.2 installed over 0.1: backed up, settings carried, 0.1 stopped, healthy after the migration, the row kept, the model registered",
        async () => {
          const r = await timed("0.1 -> 0.2", () => cli(w.installArgs(good)));
          assertEquals(r.code, 0, r.stderr);
          const j: Json = JSON.parse(r.stdout);
          console.error(`0.1 -> 0.2 step durations: ${JSON.stringify(j.durations)}`);
          assertMatch(j.database.backup.path, /before-0\.2\.0\.sql$/);
          assertMatch(r.stderr, /Stopping Cortex 0\.1\.1 before Cortex 0\.2\.0 starts/);
          await onGateway(w, g02.good.id);
          assertEquals(await alembic(w), "0002_engine_spec");
          await theRow(w);
          const env = envRecord(parseEnv(await Deno.readTextFile(`${w.cortexDir}/.env`)));
          assertEquals(env.RATE_LIMIT_RPS, RPS);
          assertEquals(env.INTERNAL_VLLM_API_KEY, TOKEN);
          assertEquals(env.ADMIN_BOOTSTRAP_PASSWORD, DB_SECRET);
          assertEquals(env.OFFLINE_MODE, "true");
          assertEquals(env.CORTEX_MODELS_DIR, `${w.root}/models`);
          assertMatch(env.SESSION_SECRET, /^[0-9a-f]{64}$/);
          assertEquals(await Deno.readTextFile(`${w.cortexDir}/backend/.env`), backendEnv);
          // The model: seeded by the installer, registered in Cortex by the bundles API.
          assertEquals(
            j.register.models.map((m: Json) => [m.source, m.status]),
            [[DEFAULT_MODEL.served, "created"]],
          );
          assertEquals(
            await w.psql(
              `SELECT count(*) FROM models WHERE served_model_name = '${DEFAULT_MODEL.served}'`,
            ),
            "1",
          );
          // The gateway saw what Cortex accepts: an import without copying or loading.
          const req = await gatewayRequests(w);
          const imp = req.filter((x) => x.path === "/admin/bundles/import");
          assertEquals(imp.length, 1);
          const body = JSON.parse(atob(imp[0].body_b64));
          assertEquals(
            [body.copy_files, body.load_images, body.conflict, body.path],
            [false, false, "skip", "/var/cortex/exports/b-0.2.0"],
          );
        },
      );

      await t.step(
        "a re-run after the operator edited the root .env: the model is skipped by Cortex; an unchanged re-run asks Cortex nothing",
        async () => {
          await Deno.writeTextFile(`${w.cortexDir}/.env`, "# edited by the operator\n", {
            append: true,
          });
          const r = await timed("re-run", () => cli(w.installArgs(good)));
          assertEquals(r.code, 0, r.stderr);
          const j: Json = JSON.parse(r.stdout);
          assertEquals(j.register.models.map((m: Json) => m.status), ["skipped"]);
          const api = async () =>
            (await gatewayRequests(w)).filter((x) => x.path !== "/health").length;
          const before = await api();
          const again = await cli(w.installArgs(good));
          assertEquals(again.code, 0, again.stderr);
          assertEquals(JSON.parse(again.stdout).outcome, "unchanged");
          assertEquals(await api(), before, "no request to Cortex's API");
          assertEquals(
            await w.psql(
              `SELECT count(*) FROM models WHERE served_model_name = '${DEFAULT_MODEL.served}'`,
            ),
            "1",
          );
        },
      );

      await t.step(
        "a 0.1 started by hand (no journal) is upgraded to 0.2 with its data",
        async () => {
          // The operator ran 0.1 with Cortex's own compose (no cortex-install, no override).
          await must(
            runDocker([
              "compose",
              "--project-name",
              hand.project,
              "--project-directory",
              hand.cortexDir,
              "-f",
              hand.composeFile,
              "up",
              "-d",
              "--wait",
            ]),
            "docker compose up (0.1 by hand)",
          );
          await writeRow(hand);
          await updateCheckoutTo02(hand, compose02(img, hand, g02.ref));
          const b = await bundle02(img, `${hand.root}/exports/b-0.2.0`, g02.ref, g02.good);
          const r = await timed("by hand -> 0.2", () => cli(hand.installArgs(b)));
          assertEquals(r.code, 0, r.stderr);
          const j: Json = JSON.parse(r.stdout);
          console.error(`by hand -> 0.2 step durations: ${JSON.stringify(j.durations)}`);
          assertEquals(j.plan.from01.installedBy, "hand");
          assertMatch(j.database.backup.path, /before-0\.2\.0\.sql$/);
          await onGateway(hand, g02.good.id);
          await theRow(hand);
          assertEquals(await alembic(hand), "0002_engine_spec");
          const jr: Json = JSON.parse(await Deno.readTextFile(`${hand.stateDir}/journal.json`));
          assertEquals(jr.releases.map((x: Json) => [x.release, x.outcome]), [
            ["0.1 (installed by hand)", "installed"],
            ["0.2.0", "installed"],
          ]);
          // Its compose file for a rollback: Cortex 0.1.1's, kept in the state dir.
          assertMatch(jr.releases[0].stack.saved.composeFile, /\/compose\/0\.1-by-hand-/);
        },
      );

      for (const out of outputs) assert(!out.includes(DB_SECRET), "no admin password printed");
      for (const out of outputs) assert(!out.includes(TOKEN), "no token printed");
      console.error(
        `0.1 -> 0.2 journeys: ${timings.join("; ")}; total ${
          ((performance.now() - t0) / 1000).toFixed(1)
        } s`,
      );
    } finally {
      await w.cleanup();
      await hand.cleanup();
      await img.cleanup();
    }
  },
});

/** The requests the gateway stand-in recorded (its STANDIN_RECORD file, read in the container). */
async function gatewayRequests(w: DbWorld): Promise<Json[]> {
  const g = await w.service("gateway");
  if (!g) return [];
  const out = await must(
    runDocker(["exec", g.id, "cat", "/var/log/standin/requests.jsonl"]),
    "read the stand-in's requests",
  );
  return out.split("\n").filter(Boolean).map((l) => JSON.parse(l));
}

void fileSha256;
