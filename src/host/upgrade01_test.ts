import { join } from "node:path";
import { parse as parseYaml } from "yaml";
import { assert, assertEquals, assertMatch, assertRejects } from "../../test/support/assert.ts";
import { createContext } from "../context.ts";
import type { DockerRunner } from "../docker.ts";
import { ExitCode, InstallError } from "../errors.ts";
import type { Release } from "../state/journal.ts";
import { CORTEX_01_COMPOSE, CORTEX_01_ENV_FILES } from "./compose01.ts";
import {
  byHandRelease,
  carriedNetwork,
  isUpgrade01to02,
  planCarry01,
  releaseLine,
  rollbackFiles,
  saveStackFiles,
} from "./upgrade01.ts";

const SECRET = "tok-" + crypto.randomUUID();
// deno-lint-ignore no-explicit-any
type Json = any;

Deno.test("releaseLine() and isUpgrade01to02(): recorded line first, else the version", () => {
  assertEquals(releaseLine({ release: "0.1.1" }), "0.1");
  assertEquals(releaseLine({ release: "v0.2.0" }), "0.2");
  assertEquals(releaseLine({ release: "dev", line: "0.2" }), "0.2");
  assert(isUpgrade01to02({ release: "0.1.1" }, "0.2"));
  assert(!isUpgrade01to02({ release: "0.2.0" }, "0.2"));
  assert(!isUpgrade01to02({ release: "0.1.1" }, "0.1"));
  assert(!isUpgrade01to02(undefined, "0.2"));
});

Deno.test("planCarry01() carries backend/.env's keys 0.2 reads where the root .env leaves them blank", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cit-carry-" });
  try {
    await Deno.mkdir(join(dir, "backend"));
    await Deno.writeTextFile(
      join(dir, "backend/.env"),
      [
        "OFFLINE_MODE=True",
        "CORTEX_MODELS_DIR=/data/models",
        `INTERNAL_VLLM_API_KEY=${SECRET}`,
        "ADMIN_BOOTSTRAP_USERNAME=owner",
        "RATE_LIMIT_RPS=25",
        "HF_CACHE_DIR=/data/hf",
        "REDIS_URL=redis://redis:6379/0", // 0.2 does not read it from the root .env
        "CORS_ALLOW_ORIGINS=https://x",
        "ADMIN_BOOTSTRAP_PASSWORD=replace-with-secret",
      ].join("\n") + "\n",
    );
    const c = await planCarry01(dir, "HF_CACHE_DIR=/kept\nRATE_LIMIT_RPS=\n");
    assertEquals(c.values, {
      OFFLINE_MODE: "True",
      CORTEX_MODELS_DIR: "/data/models",
      INTERNAL_VLLM_API_KEY: SECRET,
      ADMIN_BOOTSTRAP_USERNAME: "owner",
      RATE_LIMIT_RPS: "25",
    });
    assertEquals(carriedNetwork(c), "offline");
    assertMatch(c.notes.join("\n"), /ADMIN_BOOTSTRAP_PASSWORD .* placeholder/);
    // What people see hides the token.
    assert(!JSON.stringify(c.shown).includes(SECRET));
    assertEquals(c.shown.find((s) => s.key === "INTERNAL_VLLM_API_KEY")?.value, "***");
    // No backend/.env: nothing to carry.
    assertEquals((await planCarry01(join(dir, "none"))).values, {});
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("saveStackFiles() + rollbackFiles(): the checkout's files while unchanged, the copies once replaced", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cit-saved-" });
  try {
    const compose = join(dir, "docker.compose.prod.yaml");
    const override = join(dir, "docker.compose.cortex-install.yaml");
    await Deno.mkdir(join(dir, "backend"));
    await Deno.writeTextFile(join(dir, "backend/.env.prod"), "HEALTH_POLL_SEC=15\n");
    await Deno.writeTextFile(
      compose,
      "services: {gateway: {image: g:0.1, env_file: [./backend/.env.prod]}}\n",
    );
    await Deno.writeTextFile(override, "services: {}\n");
    const saved = await saveStackFiles(join(dir, "state"), "0.1.1", "sha256:abcdef0123456789", {
      composeFile: compose,
      override,
      cortexDir: dir,
    });
    assertMatch(
      saved.composeFile,
      /state\/compose\/0\.1\.1-abcdef012345\/docker\.compose\.prod\.yaml$/,
    );
    const rel = {
      release: "0.1.1",
      override,
      stack: {
        cortexDir: dir,
        composeFile: compose,
        project: "p",
        profiles: [],
        readiness: [],
        saved,
      },
    } as unknown as Release;
    assertEquals(await rollbackFiles(rel, { composeFile: compose }), {
      files: [compose, override],
      fromState: false,
    });
    // 0.2's compose file replaces 0.1's in place.
    await Deno.writeTextFile(compose, "name: cortex\nservices: {gateway: {image: g:0.2}}\n");
    await Deno.remove(join(dir, "backend/.env.prod")); // 0.2 no longer tracks it
    const r = await rollbackFiles(rel, { composeFile: compose });
    assertEquals(r, { files: [saved.composeFile, saved.override!], fromState: true });
    // The copy runs 0.1's gateway, its env file pointing at a copy beside it.
    const copy = parseYaml(await Deno.readTextFile(r.files[0])) as Json;
    assertEquals(copy.services.gateway.image, "g:0.1");
    const envCopy = copy.services.gateway.env_file[0];
    assertMatch(envCopy, /state\/compose\/0\.1\.1-abcdef012345\/env\/backend_.env.prod$/);
    assertEquals(await Deno.readTextFile(envCopy), "HEALTH_POLL_SEC=15\n");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Answers `docker ps` by label filter and `docker inspect` from a list of containers. */
function fakeEngine(containers: { id: string; labels: Record<string, string>; image: string }[]) {
  const docker: DockerRunner = {
    run(args) {
      if (args[0] === "ps") {
        const f = args[args.indexOf("--filter") + 1].replace(/^label=/, "");
        const [k, v] = [f.slice(0, f.indexOf("=")), f.slice(f.indexOf("=") + 1)];
        const ids = containers.filter((c) => c.labels[k] === v).map((c) => c.id);
        return Promise.resolve({ code: 0, stdout: ids.join("\n"), stderr: "" });
      }
      if (args[0] === "inspect") {
        const list = containers.filter((c) => args.includes(c.id)).map((c) => ({
          Id: c.id,
          Image: `sha256:${c.id}`,
          Config: { Image: c.image, Labels: c.labels },
          State: { StartedAt: "2026-01-01T00:00:00Z" },
        }));
        return Promise.resolve({ code: 0, stdout: JSON.stringify(list), stderr: "" });
      }
      return Promise.resolve({ code: 1, stdout: "", stderr: "unexpected" });
    },
  };
  return docker;
}

Deno.test("byHandRelease(): a 0.1 running from this checkout without a journal becomes the release upgraded from", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "cit-byhand-" });
  try {
    const cortexDir = join(dir, "Cortex");
    await Deno.mkdir(join(cortexDir, "backend"), { recursive: true });
    const composeFile = join(cortexDir, "docker.compose.prod.yaml");
    const labels = (service: string, project: string) => ({
      "com.docker.compose.project": project,
      "com.docker.compose.service": service,
      "com.docker.compose.project.working_dir": cortexDir,
      "com.docker.compose.project.config_files": composeFile,
    });
    const o = { cortexDir, composeFile, project: "cortex", stateDir: join(dir, "state") };
    const ctx = (docker: DockerRunner) =>
      createContext({ docker, sink: { write: () => {}, isTTY: false }, env: {} });
    await t.step("no backend/.env: not a 0.1 host", async () => {
      await Deno.remove(join(cortexDir, "backend"), { recursive: true });
      assertEquals(await byHandRelease(ctx(fakeEngine([])), o), undefined);
      await Deno.mkdir(join(cortexDir, "backend"));
      await Deno.writeTextFile(join(cortexDir, "backend/.env"), "X=1\n");
    });
    await t.step("nothing running: not a 0.1 host", async () => {
      assertEquals(await byHandRelease(ctx(fakeEngine([])), o), undefined);
    });
    await t.step(
      "running: its images, its compose copy (Cortex 0.1.1's), an override pinning them",
      async () => {
        const engine = fakeEngine([
          { id: "g1", labels: labels("gateway", "cortex"), image: "cortex-gateway:latest" },
          { id: "p1", labels: labels("postgres", "cortex"), image: "postgres:16" },
        ]);
        const found = (await byHandRelease(ctx(engine), o))!;
        assertEquals(found.release.origin, "by-hand");
        assertEquals(found.release.line, "0.1");
        assertEquals(found.release.images, {
          "cortex-gateway:latest": "sha256:g1",
          "postgres:16": "sha256:p1",
        });
        // Nothing written until the install goes on.
        const saved = found.release.stack!.saved!;
        await assertRejects(() => Deno.stat(saved.composeFile));
        await found.write();
        // Cortex 0.1.1's compose file; its backend/.env.prod (not in the checkout) is 0.1.1's.
        const copy = parseYaml(await Deno.readTextFile(saved.composeFile)) as Json;
        const real = parseYaml(CORTEX_01_COMPOSE["docker.compose.prod.yaml"]) as Json;
        assertEquals(copy.services.gateway.image, real.services.gateway.image);
        assertEquals(
          await Deno.readTextFile(copy.services.gateway.env_file[0]),
          CORTEX_01_ENV_FILES["backend/.env.prod"],
        );
        assertMatch(await Deno.readTextFile(saved.override!), /image: "?cortex-gateway:latest"?/);
      },
    );
    await t.step("running under another project name: refused, naming the flag", async () => {
      const engine = fakeEngine([
        { id: "g2", labels: labels("gateway", "cortex-main"), image: "cortex-gateway:latest" },
      ]);
      const e = await assertRejects(() => byHandRelease(ctx(engine), o), InstallError);
      assertEquals(e.exitCode, ExitCode.Preflight);
      assertMatch(e.hint!, /--project-name cortex-main/);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
