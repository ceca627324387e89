/**
 * Journeys for re-runs (issue #4): an unchanged re-run does no work (docker events, file bytes,
 * `--json` outcome), `status --json`, the audit log (one line per run, no secrets, a corrupt last
 * line tolerated), `kill -9` during `docker load` and during a model copy then a re-run that
 * completes, and a concurrent run refused naming the PID. CLI as a subprocess, real engine.
 */
import { assert, assertEquals, assertMatch } from "../support/assert.ts";
import { countLoadEvents, fileSha256, imageIdOf, runCli } from "../support/fixtures.ts";
import {
  buildReleases,
  newWorld,
  type ReleaseSpec,
  SECRET,
  serviceContainer,
  snapshotFiles,
  spawnCli,
  type World,
} from "../support/release_fixture.ts";

const opts = { sanitizeResources: false, sanitizeOps: false };

// deno-lint-ignore no-explicit-any
type Json = any;

const release = (o: { enginePayload?: number; models?: ReleaseSpec["models"] } = {}) => ({
  version: "0.1.1",
  images: [
    {
      repo: "vllm-openai",
      tag: "v0.6.3",
      marker: "vllm-1",
      engine: true,
      payload: o.enginePayload,
    },
    { repo: "postgres", tag: "16", marker: "pg-1" },
    { repo: "cortex-gateway", tag: "latest", marker: "gw-1" },
  ],
  models: o.models ?? { "tiny/config.json": '{"model_type":"llama"}\n' },
});

/** The state of a process (`ps` letter) once a SIGSTOP sent to it has taken effect ("T"). */
async function stoppedState(pid: number): Promise<string> {
  let state = "";
  for (let i = 0; i < 50; i++) {
    // /proc/<pid>/stat: "pid (comm) S ..."; the comm may hold spaces, the state follows the ")".
    const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
    state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    if (state !== "R" && state !== "S" && state !== "D") return state;
    await new Promise((r) => setTimeout(r, 20));
  }
  return state;
}

async function stagingLeft(w: World): Promise<string[]> {
  const out: string[] = [];
  for (const d of [w.modelsDir, w.hfCacheDir]) {
    for await (const e of Deno.readDir(d)) {
      if (e.name.startsWith(".cortex-install-staging-")) out.push(e.name);
    }
  }
  return out;
}

Deno.test({
  name: "rerun journey: an unchanged re-run does no work; status --json; audit log per run",
  ...opts,
  fn: async () => {
    const w = await newWorld();
    try {
      const [r1] = await buildReleases(w, [release()]);
      const i1 = await runCli([...w.installArgs(r1.dir), "--json"]);
      assertEquals(i1.code, 0, i1.stderr);
      assertEquals(JSON.parse(i1.stdout).outcome, "installed");

      const files0 = { ...await snapshotFiles(w.cortexDir), ...await snapshotFiles(w.modelsDir) };
      const t0 = Date.now() / 1000;
      const i2 = await runCli([...w.installArgs(r1.dir), "--json"]);
      const t1 = Date.now() / 1000 + 1;
      assertEquals(i2.code, 0, i2.stderr);
      const j2: Json = JSON.parse(i2.stdout);
      assertEquals(j2.outcome, "unchanged");
      assertEquals(j2.stack.healthy, true);
      assertEquals(await countLoadEvents(t0, t1, w.label), 0);
      const files1 = { ...await snapshotFiles(w.cortexDir), ...await snapshotFiles(w.modelsDir) };
      assertEquals(files1, files0, "no file written (bytes, mtime, inode)");

      // status --json: release, images present, services and health, last run.
      const st = await runCli(["status", "--state-dir", w.stateDir, "--json"]);
      assertEquals(st.code, 0, st.stderr);
      const js: Json = JSON.parse(st.stdout);
      assertEquals(js.installed.release, "0.1.1");
      assertEquals(js.installed.bundleDir, r1.dir);
      assertMatch(js.installed.bundleDigest, /^(sha256:)?[0-9a-f]{64}$/);
      for (const [ref, id] of Object.entries(r1.ids)) {
        const img = js.images.find((i: Json) => i.ref === ref);
        assertEquals(img?.imageId, id, ref);
        assertEquals(img?.state, "present", ref);
      }
      const names = js.services.map((s: Json) => s.name).sort();
      assertEquals(names, ["gateway", "postgres"]);
      assertEquals(js.healthy, true);
      assertEquals(js.lastRun.outcome, "ok");
      assertEquals(js.lastRun.exitCode, 0);
      assert(js.models.some((m: Json) => m.target.endsWith("/tiny") && m.present), "model");

      // A stopped service is repaired by a re-run, still without loading anything.
      const g = (await serviceContainer(w.project, "gateway"))!;
      const { runDocker } = await import("../../src/docker.ts");
      await runDocker(["stop", "-t", "1", g.id]);
      const t2 = Date.now() / 1000;
      const i3 = await runCli([...w.installArgs(r1.dir), "--json"]);
      const t3 = Date.now() / 1000 + 1;
      assertEquals(i3.code, 0, i3.stderr);
      assertEquals(JSON.parse(i3.stdout).outcome, "unchanged");
      assertEquals((await serviceContainer(w.project, "gateway"))?.health, "healthy");
      assertEquals(await countLoadEvents(t2, t3, w.label), 0);

      // Audit: one JSON line per run, no secret; a torn last line does not stop the next run.
      const auditPath = `${w.stateDir}/audit.log`;
      let lines = (await Deno.readTextFile(auditPath)).split("\n").filter(Boolean);
      assertEquals(lines.length, 3);
      for (const l of lines) {
        const a = JSON.parse(l);
        assertEquals(a.outcome, "ok");
        assertEquals(a.exitCode, 0);
        assertEquals(a.bundleDigest, js.installed.bundleDigest);
        assert(Array.isArray(a.command) && a.command.includes("install"), l);
        assert(typeof a.durationMs === "number", l);
      }
      assert(JSON.parse(lines[0]).artifacts.length >= 3, "the first run lists its artifacts");
      await Deno.writeTextFile(auditPath, '{"time":"2026-01-0', { append: true });
      const i4 = await runCli([...w.installArgs(r1.dir), "--json"]);
      assertEquals(i4.code, 0, i4.stderr);
      lines = (await Deno.readTextFile(auditPath)).split("\n").filter(Boolean);
      assertEquals(lines.length, 5, "the torn line stays; the new record is on its own line");
      assertEquals(lines[3], '{"time":"2026-01-0');
      assertEquals(JSON.parse(lines[4]).outcome, "ok");
      const st2 = await runCli(["status", "--state-dir", w.stateDir, "--json"]);
      assertEquals(st2.code, 0, st2.stderr);

      const audit = await Deno.readTextFile(auditPath);
      for (const text of [audit, i1.stdout, i1.stderr, i2.stdout, st.stdout, i4.stdout]) {
        assert(!text.includes(SECRET), "no secret in any output or in the audit log");
      }
    } finally {
      await w.cleanup();
    }
  },
});

Deno.test({
  name: "rerun journey: kill -9 during docker load, a concurrent run refused naming the PID, " +
    "then a re-run completes",
  ...opts,
  fn: async () => {
    const w = await newWorld();
    try {
      const [r1] = await buildReleases(w, [release({ enginePayload: 200 * 1024 * 1024 })]);
      const vllm = `${w.prefix}/vllm-openai:v0.6.3`;
      const first = spawnCli([...w.installArgs(r1.dir), "--json"]);
      assert(await first.waitFor(/load vllm-openai-v0\.6\.3\.tar/), first.stderr());
      first.child.kill("SIGKILL");
      const killed = await first.done;
      assertEquals(killed.code, 137);
      // Whatever the engine kept is never a wrong image under the ref.
      const now = await imageIdOf(vllm);
      assert(now === undefined || now === r1.ids[vllm], `${vllm} -> ${now}`);

      // The re-run holds the lock: a second run meanwhile is refused at once, naming its PID.
      // The re-run is stopped (SIGSTOP) while the other asks, so that it cannot finish first.
      const second = spawnCli([...w.installArgs(r1.dir), "--json"]);
      assert(await second.waitFor(/Preflight|load |Cortex/), second.stderr());
      Deno.kill(second.child.pid, "SIGSTOP");
      try {
        assertEquals(await stoppedState(second.child.pid), "T", "the re-run is stopped, locked");
        const c = await runCli([...w.installArgs(r1.dir), "--json"]);
        assertEquals(c.code, 3, c.stderr);
        assertMatch(c.stderr, new RegExp(`PID ${second.child.pid}\\b`));
      } finally {
        Deno.kill(second.child.pid, "SIGCONT");
      }

      const done = await second.done;
      assertEquals(done.code, 0, done.stderr);
      const j: Json = JSON.parse(done.stdout);
      assertEquals(j.outcome, "installed");
      for (const [ref, id] of Object.entries(r1.ids)) assertEquals(await imageIdOf(ref), id, ref);
      assertEquals((await serviceContainer(w.project, "gateway"))?.health, "healthy");
      const st: Json = JSON.parse(
        (await runCli(["status", "--state-dir", w.stateDir, "--json"])).stdout,
      );
      assertEquals(st.interruptedRun, null);
      assertEquals(st.lastRun.outcome, "ok");
    } finally {
      await w.cleanup();
    }
  },
});

Deno.test({
  name: "rerun journey: kill -9 during a model copy leaves no half-copied model; a re-run " +
    "cleans the staging and completes",
  ...opts,
  fn: async () => {
    const w = await newWorld();
    try {
      const big = new Uint8Array(384 * 1024 * 1024);
      for (let i = 0; i < big.length; i += 65536) {
        crypto.getRandomValues(big.subarray(i, i + 65536));
      }
      const [r1] = await buildReleases(w, [release({
        models: { "big/config.json": '{"model_type":"llama"}\n', "big/model.safetensors": big },
      })]);
      const want = await fileSha256(`${r1.dir}/models/big/model.safetensors`);
      const first = spawnCli([...w.installArgs(r1.dir), "--json"]);
      assert(await first.waitFor(/copy model big/), first.stderr());
      first.child.kill("SIGKILL");
      assertEquals((await first.done).code, 137);
      // Cortex lists direct subfolders: "big" must not be visible half-copied.
      const visible = [...Deno.readDirSync(w.modelsDir)].map((e) => e.name)
        .filter((n) => !n.startsWith("."));
      assertEquals(visible, [], "no model folder visible after the kill");

      const again = await runCli([...w.installArgs(r1.dir), "--json"]);
      assertEquals(again.code, 0, again.stderr);
      assertEquals(JSON.parse(again.stdout).outcome, "installed");
      assertEquals(await fileSha256(`${w.modelsDir}/big/model.safetensors`), want);
      assertEquals(await stagingLeft(w), [], "staging cleaned");
      assertEquals((await serviceContainer(w.project, "gateway"))?.health, "healthy");
    } finally {
      await w.cleanup();
    }
  },
});
