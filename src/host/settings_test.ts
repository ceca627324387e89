import assert from "node:assert/strict";
import { parse as parseYaml } from "yaml";
import { applySettings, planSettings, type SettingsInput, settingsKeys } from "./settings.ts";
import { APPEND_HEADER, getEnv, parseEnv } from "./dotenv.ts";
import { parseReleasePolicies, policyForLine, type ReleaseManifest } from "../bundle/release.ts";
import { InstallError } from "../errors.ts";
import { COMPOSE_OVERRIDE } from "../layout.ts";

const FIX = new URL("../../test/testdata/cortex-v0.1.1/", import.meta.url).pathname;
const RELEASE: ReleaseManifest = policyForLine(
  parseReleasePolicies(
    Deno.readTextFileSync(new URL("../../assets/manifest.json", import.meta.url)),
    "assets/manifest.json",
  ),
  "0.1",
)!;
const NOW = new Date("2026-01-18T12:00:00Z");

async function withCortex(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "cit-settings-" });
  try {
    const o = await new Deno.Command("cp", { args: ["-r", `${FIX}.`, dir] }).output();
    assert.ok(o.success);
    await new Deno.Command("chmod", { args: ["-R", "u+w", dir] }).output();
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function input(dir: string, over: Partial<SettingsInput> = {}): SettingsInput {
  return {
    cortexDir: dir,
    network: "offline",
    release: RELEASE,
    shippedImages: [
      { role: "vllm", ref: "vllm/vllm-openai:v0.6.3" },
      { role: "llamacpp", ref: "ghcr.io/ggml-org/llama.cpp:server-cuda" },
      { role: "postgres", ref: "postgres:16" },
    ],
    modelsDir: "/var/cortex/models",
    hfCacheDir: "/var/cortex/hf-cache",
    composeFile: `${dir}/docker.compose.dev.yaml`,
    services: {
      postgres: { image: "postgres:16" },
      redis: { image: "redis:7" },
      gateway: { image: "cortex-gateway:latest" },
      prometheus: { image: "prom/prometheus:latest" },
      "not-in-compose": { image: "x:1" },
    },
    ...over,
  };
}

const snapshot = (dir: string): Record<string, string> => {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const e of Deno.readDirSync(d)) {
      const p = `${d}/${e.name}`;
      if (e.isDirectory) walk(p);
      else out[p.slice(dir.length)] = Deno.readTextFileSync(p);
    }
  };
  walk(dir);
  return out;
};

Deno.test("settingsKeys() for offline and online", async (t) => {
  const base = {
    release: RELEASE,
    shippedImages: [{ role: "vllm", ref: "vllm/vllm-openai:v0.6.3" }],
    modelsDir: "/m",
    hfCacheDir: "/h",
  };
  await t.step("offline", () => {
    assert.deepEqual(settingsKeys({ ...base, network: "offline" }), {
      OFFLINE_MODE: "True",
      OFFLINE_MODE_AUTO_DETECT: "False",
      REQUIRE_IMAGE_PRECACHE: "True",
      VLLM_IMAGE: "vllm/vllm-openai:v0.6.3",
      CORTEX_MODELS_DIR: "/m",
      CORTEX_MODELS_DIR_HOST: "/m",
      HF_CACHE_DIR: "/h",
    });
  });
  await t.step("online, no llamacpp shipped", () => {
    const k = settingsKeys({ ...base, network: "online" });
    assert.equal(k.OFFLINE_MODE, "False");
    assert.equal(k.OFFLINE_MODE_AUTO_DETECT, "True");
    assert.equal(k.REQUIRE_IMAGE_PRECACHE, "False");
    assert.equal(k.LLAMACPP_IMAGE, undefined);
  });
});

Deno.test("planSettings() + applySettings() on a copy of the real Cortex tree", async (t) => {
  await t.step(
    "dev: writes the three files, keeps the operator's lines",
    () =>
      withCortex(async (dir) => {
        const originalBackend = Deno.readTextFileSync(`${dir}/backend/.env`);
        const plan = await planSettings(input(dir));
        assert.deepEqual(plan.rootKeys, ["VLLM_IMAGE", "CORTEX_MODELS_DIR", "HF_CACHE_DIR"]);
        const res = await applySettings(plan, { now: NOW });
        assert.deepEqual(res.files.map((f) => [f.path.slice(dir.length), f.changed, f.backup]), [
          ["/backend/.env", true, `${dir}/backend/.env.bak-20260118T120000Z`],
          ["/.env", true, undefined],
          [`/${COMPOSE_OVERRIDE}`, true, undefined],
        ]);

        const backend = Deno.readTextFileSync(`${dir}/backend/.env`);
        assert.ok(backend.startsWith(originalBackend + "\n\n" + APPEND_HEADER + "\n"));
        assert.ok(backend.includes("\nOFFLINE_MODE=True\n"), "Cortex's verify greps this literal");
        assert.ok(backend.endsWith("HF_CACHE_DIR=/var/cortex/hf-cache"), "no final newline kept");
        const doc = parseEnv(backend);
        assert.equal(getEnv(doc, "LLAMACPP_IMAGE"), "ghcr.io/ggml-org/llama.cpp:server-cuda");
        assert.equal(
          getEnv(doc, "CORS_ALLOW_ORIGINS"),
          "http://localhost:3001,http://10.1.10.241:3001",
        );
        assert.equal(Deno.readTextFileSync(res.files[0].backup!), originalBackend);
        assert.equal(Deno.statSync(`${dir}/backend/.env`).mode! & 0o777, 0o600);

        assert.equal(
          Deno.readTextFileSync(`${dir}/.env`),
          `${APPEND_HEADER}\nVLLM_IMAGE=vllm/vllm-openai:v0.6.3\nCORTEX_MODELS_DIR=/var/cortex/models\n` +
            "HF_CACHE_DIR=/var/cortex/hf-cache\n",
        );
        assert.equal(Deno.statSync(`${dir}/.env`).mode! & 0o777, 0o600);

        const ov = parseYaml(Deno.readTextFileSync(`${dir}/${COMPOSE_OVERRIDE}`));
        assert.deepEqual(ov, {
          services: {
            gateway: { env_file: ["./backend/.env"], image: "cortex-gateway:latest" },
            postgres: { image: "postgres:16" },
            prometheus: { image: "prom/prometheus:latest" },
            redis: { image: "redis:7" },
          },
        });
        assert.equal(Deno.statSync(`${dir}/${COMPOSE_OVERRIDE}`).mode! & 0o777, 0o644);
        assert.deepEqual(res.files[2].keys[0], {
          key: "services.gateway.env_file",
          new: "./backend/.env",
        });
      }),
  );

  await t.step("a second run changes no byte and makes no backup", () =>
    withCortex(async (dir) => {
      await applySettings(await planSettings(input(dir)), { now: NOW });
      const before = snapshot(dir);
      const plan2 = await planSettings(input(dir));
      assert.deepEqual(plan2.files.map((f) => [f.changed, f.keys.length]), [
        [false, 0],
        [false, 0],
        [false, 0],
      ]);
      const res2 = await applySettings(plan2, { now: new Date("2026-01-19T00:00:00Z") });
      assert.deepEqual(res2.files.map((f) => [f.changed, f.backup]), [
        [false, undefined],
        [false, undefined],
        [false, undefined],
      ]);
      assert.deepEqual(snapshot(dir), before);
    }));

  await t.step(
    "switching to online changes values in place and reports them",
    () =>
      withCortex(async (dir) => {
        await applySettings(await planSettings(input(dir)), { now: NOW });
        const plan = await planSettings(input(dir, { network: "online" }));
        assert.deepEqual(plan.files[0].keys, [
          { key: "OFFLINE_MODE", old: "True", new: "False" },
          { key: "OFFLINE_MODE_AUTO_DETECT", old: "False", new: "True" },
          { key: "REQUIRE_IMAGE_PRECACHE", old: "True", new: "False" },
        ]);
        assert.equal(plan.files[1].changed, false);
        const res = await applySettings(plan, { now: new Date("2026-01-19T00:00:00Z") });
        assert.equal(res.files[0].backup, `${dir}/backend/.env.bak-20260119T000000Z`);
        const text = Deno.readTextFileSync(`${dir}/backend/.env`);
        assert.equal(text.split(APPEND_HEADER).length, 2, "header written once");
        assert.equal(getEnv(parseEnv(text), "OFFLINE_MODE"), "False");
      }),
  );

  await t.step(
    "existing root .env keeps its keys; missing backend/.env is created from nothing",
    () =>
      withCortex(async (dir) => {
        Deno.copyFileSync(`${dir}/.env.linux`, `${dir}/.env`);
        Deno.removeSync(`${dir}/backend/.env`);
        const res = await applySettings(
          await planSettings(input(dir, { modelsDir: "/data/models" })),
          { now: NOW },
        );
        const root = Deno.readTextFileSync(`${dir}/.env`);
        assert.equal(
          root,
          "CORTEX_MODELS_DIR=/data/models\nHF_CACHE_DIR=/var/cortex/hf-cache\nGATEWAY_PORT=8084\n" +
            `PROM_PORT=9094\n\n${APPEND_HEADER}\nVLLM_IMAGE=vllm/vllm-openai:v0.6.3\n`,
        );
        // In-place changes first, then appended keys.
        assert.deepEqual(res.files[1].keys, [
          { key: "CORTEX_MODELS_DIR", old: "/var/cortex/models", new: "/data/models" },
          { key: "VLLM_IMAGE", new: "vllm/vllm-openai:v0.6.3" },
        ]);
        assert.ok(res.files[1].backup);
        const backend = Deno.readTextFileSync(`${dir}/backend/.env`);
        assert.ok(backend.startsWith(`${APPEND_HEADER}\nOFFLINE_MODE=True\n`));
        assert.ok(!backend.includes("RATE_LIMIT"), "not copied from .env.example");
        assert.equal(res.files[0].backup, undefined);
      }),
  );

  await t.step("prod compose: root .env keys from the prod file", () =>
    withCortex(async (dir) => {
      const plan = await planSettings(
        input(dir, { composeFile: `${dir}/docker.compose.prod.yaml`, services: {} }),
      );
      assert.deepEqual(plan.rootKeys, ["VLLM_IMAGE", "CORTEX_MODELS_DIR", "HF_CACHE_DIR"]);
      assert.deepEqual(parseYaml(plan.files[2].after), {
        services: { gateway: { env_file: ["./backend/.env"] } },
      });
    }));

  await t.step("secret values are redacted in the reported keys", () =>
    withCortex(async (dir) => {
      const release = {
        ...RELEASE,
        env: { ...RELEASE.env, offline: { ...RELEASE.env.offline, HF_TOKEN: "hf_secret" } },
      };
      const plan = await planSettings(input(dir, { release }));
      const k = plan.files[0].keys.find((x) => x.key === "HF_TOKEN");
      assert.deepEqual(k, { key: "HF_TOKEN", new: "***" });
      assert.ok(!JSON.stringify(plan.files.map((f) => f.keys)).includes("hf_secret"));
      assert.ok(plan.files[0].after.includes("HF_TOKEN=hf_secret"));
    }));

  await t.step("a file edited after the plan is not overwritten", () =>
    withCortex(async (dir) => {
      const plan = await planSettings(input(dir));
      Deno.writeTextFileSync(`${dir}/backend/.env`, "EDITED=1\n");
      await assert.rejects(applySettings(plan), (e: unknown) =>
        e instanceof InstallError && /changed while the installer was running/.test(e.message));
      assert.equal(Deno.readTextFileSync(`${dir}/backend/.env`), "EDITED=1\n");
      assert.ok(!Deno.statSync(`${dir}/.env.linux`).isDirectory);
      assert.throws(() =>
        Deno.statSync(`${dir}/.env`), Deno.errors.NotFound);
    }));

  await t.step(
    "a compose file without the gateway service is refused",
    () =>
      withCortex(async (dir) => {
        Deno.writeTextFileSync(`${dir}/c.yaml`, "services:\n  web:\n    image: x\n");
        await assert.rejects(
          planSettings(input(dir, { composeFile: `${dir}/c.yaml` })),
          (e: unknown) =>
            e instanceof InstallError && e.exitCode === 3 &&
            /has no service "gateway"/.test(e.message),
        );
      }),
  );
});

async function composeV1Available(): Promise<boolean> {
  try {
    return (await new Deno.Command("docker-compose", {
      args: ["version"],
      stdout: "null",
      stderr: "null",
    })
      .output()).success;
  } catch {
    return false;
  }
}

Deno.test({
  name: "applySettings() output is effective for the real docker-compose v1",
  ignore: !(await composeV1Available()),
  fn: () =>
    withCortex(async (dir) => {
      Deno.mkdirSync(`${dir}/frontend`);
      // Compose v1 rejects the top-level `name:`; the project name is passed with -p instead.
      // The stripped copy sits beside the original, so the root .env is still beside it.
      const text = Deno.readTextFileSync(`${dir}/docker.compose.dev.yaml`);
      Deno.writeTextFileSync(`${dir}/v1.dev.yaml`, text.replace(/^name:.*\n/m, ""));
      await applySettings(await planSettings(input(dir, { modelsDir: "/data/models" })), {
        now: NOW,
      });
      const o = await new Deno.Command("docker-compose", {
        args: ["-p", "cortex", "-f", "v1.dev.yaml", "-f", COMPOSE_OVERRIDE, "config"],
        cwd: dir,
        env: { PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin" },
        clearEnv: true,
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.ok(o.success, new TextDecoder().decode(o.stderr));
      const cfg = parseYaml(new TextDecoder().decode(o.stdout)) as {
        services: Record<
          string,
          { image?: string; environment?: Record<string, string>; volumes?: string[] }
        >;
      };
      const gw = cfg.services.gateway;
      assert.equal(gw.image, "cortex-gateway:latest");
      assert.equal(gw.environment?.OFFLINE_MODE, "True");
      assert.equal(gw.environment?.REQUIRE_IMAGE_PRECACHE, "True");
      assert.equal(gw.environment?.LLAMACPP_IMAGE, "ghcr.io/ggml-org/llama.cpp:server-cuda");
      // From the root .env through interpolation of `${VLLM_IMAGE:-...}` / `${CORTEX_MODELS_DIR:-...}`.
      assert.equal(gw.environment?.VLLM_IMAGE, "vllm/vllm-openai:v0.6.3");
      assert.equal(gw.environment?.CORTEX_MODELS_DIR_HOST, "/data/models");
      assert.ok(
        gw.volumes?.includes("/data/models:/var/cortex/models:rw"),
        JSON.stringify(gw.volumes),
      );
      assert.equal(cfg.services.prometheus.image, "prom/prometheus:latest");
    }),
});
