/**
 * Journeys for upgrades (issue #4): v1 -> v2 with a new engine tag and a reused `:latest`
 * gateway tag, layer skipping, user edits kept, only changed services recreated, downgrade
 * refused, `rollback` on demand, and an upgrade that never gets healthy rolling back by itself.
 * The CLI runs as a subprocess against the real engine; every test has its own prefix, compose
 * project and loopback ports (test/support/release_fixture.ts).
 */
import { assert, assertEquals, assertMatch } from "../support/assert.ts";
import { imageIdOf, runCli } from "../support/fixtures.ts";
import {
  buildReleases,
  containerEnv,
  newWorld,
  type ReleaseSpec,
  SECRET,
  serviceContainer,
} from "../support/release_fixture.ts";
import { classicImageStore } from "../../src/images/load.ts";

const opts = { sanitizeResources: false, sanitizeOps: false };

const v1 = (): ReleaseSpec => ({
  version: "0.1.1",
  images: [
    { repo: "vllm-openai", tag: "v0.6.3", marker: "vllm-1", engine: true, base: "cuda" },
    { repo: "postgres", tag: "16", marker: "pg-1" },
    { repo: "cortex-gateway", tag: "latest", marker: "gw-1" },
  ],
});

const v2 = (broken = false): ReleaseSpec => ({
  version: "0.1.2",
  images: [
    // New engine tag on the same base layer: that layer is not sent to docker load again.
    { repo: "vllm-openai", tag: "v0.6.4", marker: "vllm-2", engine: true, base: "cuda" },
    { repo: "postgres", tag: "16", marker: "pg-1" }, // unchanged: same tar, same image ID
    { repo: "cortex-gateway", tag: "latest", marker: "gw-2", broken }, // same tag, new ID
  ],
});

// deno-lint-ignore no-explicit-any
type Json = any;

async function readBytes(path: string): Promise<Uint8Array | undefined> {
  try {
    return await Deno.readFile(path);
  } catch {
    return undefined;
  }
}

Deno.test("classicImageStore() tells graph drivers from the containerd image store", async (t) => {
  const cases: [string, boolean][] = [
    ['overlay2\t[["Backing Filesystem","extfs"],["Supports d_type","true"]]', true],
    ['overlayfs\t[["driver-type","io.containerd.snapshotter.v1"]]', false],
    ['overlay2\t[["driver-type","io.containerd.snapshotter.v1"]]', false],
    ["btrfs\tnull", true],
    ["stargz\tnull", false],
  ];
  for (const [info, want] of cases) {
    await t.step(info, () => assertEquals(classicImageStore(info).enabled, want));
  }
});

Deno.test({
  name: "upgrade journey: v1 -> v2 loads only what changed, keeps user edits, recreates only " +
    "changed services; downgrade refused; rollback on demand returns to v1",
  ...opts,
  fn: async () => {
    const w = await newWorld();
    try {
      const [r1, r2] = await buildReleases(w, [v1(), v2()]);
      const gw = `${w.prefix}/cortex-gateway:latest`;
      const pg = `${w.prefix}/postgres:16`;
      const vllm1 = `${w.prefix}/vllm-openai:v0.6.3`;
      const vllm2 = `${w.prefix}/vllm-openai:v0.6.4`;
      assert(r1.ids[gw] !== r2.ids[gw], "the gateway's :latest changes ID");
      assertEquals(r1.ids[pg], r2.ids[pg]);

      const i1 = await runCli([...w.installArgs(r1.dir), "--json"]);
      assertEquals(i1.code, 0, i1.stderr);
      assertEquals(JSON.parse(i1.stdout).outcome, "installed");
      const pg1 = (await serviceContainer(w.project, "postgres"))!;
      const gw1 = (await serviceContainer(w.project, "gateway"))!;
      assertEquals(gw1.image, r1.ids[gw]);

      // The operator edits backend/.env between the two runs.
      const backendEnv = `${w.cortexDir}/backend/.env`;
      await Deno.writeTextFile(
        backendEnv,
        (await Deno.readTextFile(backendEnv)).replace("RATE_LIMIT_RPS=10", "RATE_LIMIT_RPS=42"),
      );
      const before = {
        backend: await Deno.readTextFile(backendEnv),
        root: await Deno.readTextFile(`${w.cortexDir}/.env`),
      };

      const i2 = await runCli([...w.installArgs(r2.dir), "--json"]);
      assertEquals(i2.code, 0, i2.stderr);
      const j2: Json = JSON.parse(i2.stdout);
      assertEquals(j2.outcome, "installed");
      assert(j2.plan.upgrade, "planned as an upgrade");
      const verdicts = Object.fromEntries(
        j2.images.images.map((i: Json) => [i.refs[0], i.verdict]),
      );
      assertEquals(verdicts, { [vllm2]: "loaded", [pg]: "present", [gw]: "loaded" });
      assertEquals(j2.images.dockerLoads, 2);
      // The engine's base layer was present (from v0.6.3): it went to docker load empty.
      const eng = j2.images.images.find((i: Json) => i.refs[0] === vllm2);
      if (j2.images.layerSkip?.enabled) {
        assertEquals(eng.skippedLayers, 1);
        assert(eng.skippedLayerBytes > 0);
        assert(eng.skippedLayerBytes < eng.bytes);
      }
      assertEquals(await imageIdOf(vllm2), r2.ids[vllm2]);
      assertEquals(await imageIdOf(gw), r2.ids[gw]);
      // The previous images are still in the engine, by ID.
      assertEquals(await imageIdOf(r1.ids[gw]), r1.ids[gw]);
      assertEquals(await imageIdOf(vllm1), r1.ids[vllm1]);

      // Env: image key updated, the user's edit kept, previous content kept as a backup.
      const backendAfter = await Deno.readTextFile(backendEnv);
      assertMatch(backendAfter, new RegExp(`^VLLM_IMAGE=${vllm2.replaceAll(".", "\\.")}$`, "m"));
      assertMatch(backendAfter, /^RATE_LIMIT_RPS=42$/m);
      const backups = [...Deno.readDirSync(`${w.cortexDir}/backend`)].map((e) => e.name)
        .filter((n) => n.startsWith(".env.bak"));
      const backupTexts = backups.map((n) => Deno.readTextFileSync(`${w.cortexDir}/backend/${n}`));
      assert(backupTexts.includes(before.backend), `v1's backend/.env kept: ${backups}`);
      assertMatch(await Deno.readTextFile(`${w.cortexDir}/.env`), /^VLLM_IMAGE=.*v0\.6\.4$/m);

      // Only the gateway was recreated; it runs v2 and sees the new VLLM_IMAGE.
      const pg2 = (await serviceContainer(w.project, "postgres"))!;
      const gw2 = (await serviceContainer(w.project, "gateway"))!;
      assertEquals(pg2.id, pg1.id, "postgres (unchanged image) not recreated");
      assert(gw2.id !== gw1.id, "gateway recreated");
      assertEquals(gw2.image, r2.ids[gw]);
      assertEquals((await containerEnv(gw2.id)).VLLM_IMAGE, vllm2);

      // An older bundle is refused (exit 3) unless --allow-downgrade.
      const d = await runCli([...w.installArgs(r1.dir), "--json"]);
      assertEquals(d.code, 3, d.stderr);
      assertMatch(d.stderr, /older than the installed 0\.1\.2/);
      assertMatch(d.stderr, /--allow-downgrade/);
      assertEquals(await imageIdOf(gw), r2.ids[gw], "the refused run changed nothing");
      const dp = await runCli([
        ...w.installArgs(r1.dir, ["--dry-run", "--allow-downgrade"]),
        "--json",
      ]);
      assertEquals(dp.code, 0, dp.stderr);
      assertEquals(JSON.parse(dp.stdout).outcome, "planned");

      // rollback on demand: back to v1's images, env files and containers.
      const rb = await runCli(["rollback", "--state-dir", w.stateDir, "--yes", "--json"]);
      assertEquals(rb.code, 0, rb.stderr);
      const jr: Json = JSON.parse(rb.stdout);
      assertEquals([jr.from, jr.to], ["0.1.2", "0.1.1"]);
      assertEquals(await imageIdOf(gw), r1.ids[gw]);
      const gw3 = (await serviceContainer(w.project, "gateway"))!;
      assertEquals(gw3.image, r1.ids[gw]);
      assertEquals(gw3.health, "healthy");
      assertEquals((await containerEnv(gw3.id)).VLLM_IMAGE, vllm1);
      assertEquals(await Deno.readTextFile(backendEnv), before.backend);
      assertEquals(await Deno.readTextFile(`${w.cortexDir}/.env`), before.root);
      const st = await runCli(["status", "--state-dir", w.stateDir, "--json"]);
      assertEquals(st.code, 0, st.stderr);
      assertEquals(JSON.parse(st.stdout).installed.release, "0.1.1");

      for (const out of [i1, i2, d, rb, st]) {
        assert(!out.stdout.includes(SECRET) && !out.stderr.includes(SECRET), "no secret printed");
      }
    } finally {
      await w.cleanup();
    }
  },
});

Deno.test({
  name: "upgrade journey: a new gateway that never gets healthy rolls back by itself (exit 6)",
  ...opts,
  fn: async () => {
    const w = await newWorld();
    try {
      const [r1, r2] = await buildReleases(w, [v1(), v2(true)]);
      const gw = `${w.prefix}/cortex-gateway:latest`;
      const i1 = await runCli([...w.installArgs(r1.dir), "--json"]);
      assertEquals(i1.code, 0, i1.stderr);
      const files = [
        `${w.cortexDir}/backend/.env`,
        `${w.cortexDir}/.env`,
        `${w.cortexDir}/backend/.env.prod`,
        w.override,
      ];
      const before = await Promise.all(files.map(readBytes));

      const i2 = await runCli([...w.installArgs(r2.dir, ["--wait-timeout", "6"]), "--json"]);
      assertEquals(i2.code, 6, i2.stderr);
      assertMatch(i2.stderr, /rolled back to Cortex 0\.1\.1/);
      // Healthy on the previous release: the gateway runs v1's image ID.
      const g = (await serviceContainer(w.project, "gateway"))!;
      assertEquals(g.image, r1.ids[gw]);
      assertEquals(g.health, "healthy");
      assertEquals(await imageIdOf(gw), r1.ids[gw]);
      const res = await fetch(`http://127.0.0.1:${w.ports.gateway}/health`);
      assertEquals(await res.json(), { status: "ok" });
      // Env files and override byte-identical to before the upgrade.
      const after = await Promise.all(files.map(readBytes));
      for (const [i, f] of files.entries()) assertEquals(after[i], before[i], f);

      const st = await runCli(["status", "--state-dir", w.stateDir, "--json"]);
      const js: Json = JSON.parse(st.stdout);
      assertEquals(js.installed.release, "0.1.1");
      assertEquals(js.lastRun.exitCode, 6);
      assertEquals(js.healthy, true);
    } finally {
      await w.cleanup();
    }
  },
});
