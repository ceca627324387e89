import assert from "node:assert/strict";
import { InstallError } from "../errors.ts";
import {
  DockerSaveManifestSchema,
  hasAdminSettings,
  isOptional,
  isScriptManifestShape,
  parseAdminManifest,
  parseScriptManifest,
  scriptImageRefs,
} from "./manifests.ts";

/** The shape `make prepare-offline` writes (cortex-facts.md §1.1). */
const SCRIPT_MANIFEST = {
  created: "2026-01-18T12:00:00Z",
  cortex_version: "0.1.1",
  prepared_by: "user@host",
  images: {
    engines: [
      {
        name: "vllm/vllm-openai",
        version: "v0.6.3",
        file: "vllm-openai-v0.6.3.tar",
        purpose: "vLLM engine",
      },
      {
        name: "ghcr.io/ggml-org/llama.cpp",
        tag: "server-cuda",
        file: "llamacpp-server-cuda.tar",
        purpose: "llama.cpp engine",
      },
    ],
    infrastructure: [
      { name: "postgres:16", file: "postgres-16.tar", purpose: "Database" },
      {
        name: "nvidia/dcgm-exporter",
        file: "dcgm-exporter.tar",
        purpose: "GPU metrics (optional)",
      },
    ],
  },
  deployment_notes: { transfer_methods: ["usb"], load_command: "make load-offline" },
  extra_future_key: 1,
};

function rejects(fn: () => unknown, re: RegExp) {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof InstallError, String(e));
    assert.equal(e.exitCode, 3);
    assert.match(e.message, re);
    return true;
  });
}

Deno.test("parseScriptManifest() reads the prepare-offline manifest", async (t) => {
  const m = parseScriptManifest(JSON.stringify(SCRIPT_MANIFEST), "manifest.json");
  await t.step("metadata and entries", () => {
    assert.equal(m.cortex_version, "0.1.1");
    assert.equal(m.images.engines.length, 2);
    assert.equal(m.images.infrastructure[1].file, "dcgm-exporter.tar");
    assert.deepEqual((m as Record<string, unknown>).extra_future_key, 1);
  });
  await t.step("refs: version vs tag vs full name vs untagged dcgm", () => {
    assert.deepEqual(scriptImageRefs(m.images.engines[0]), ["vllm/vllm-openai:v0.6.3"]);
    assert.deepEqual(scriptImageRefs(m.images.engines[1]), [
      "ghcr.io/ggml-org/llama.cpp:server-cuda",
    ]);
    assert.deepEqual(scriptImageRefs(m.images.infrastructure[0]), ["postgres:16"]);
    assert.deepEqual(scriptImageRefs(m.images.infrastructure[1]), []);
  });
  await t.step("an engine with neither version nor tag resolves from the tar", () => {
    assert.deepEqual(scriptImageRefs({ name: "vllm/vllm-openai", file: "v.tar" }), []);
  });
  await t.step("a registry port is not a tag", () => {
    assert.deepEqual(scriptImageRefs({ name: "reg:5000/dcgm", file: "d.tar" }), []);
    assert.deepEqual(scriptImageRefs({ name: "reg:5000/x:1", file: "x.tar" }), ["reg:5000/x:1"]);
  });
  await t.step("missing lists default to empty", () => {
    const e = parseScriptManifest('{"images":{"engines":[]}}', "m.json");
    assert.deepEqual(e.images.infrastructure, []);
  });
});

Deno.test("parseScriptManifest() names the file and field of an error", async (t) => {
  const cases: [string, string, RegExp][] = [
    ["not JSON", "{", /^Cannot read bundle manifest "b\/manifest.json": not valid JSON/],
    ["no images", "{}", /"b\/manifest.json": images: /],
    [
      "engine without file",
      '{"images":{"engines":[{"name":"x","version":"1"}]}}',
      /images\.engines\.0\.file/,
    ],
    [
      "file escaping the bundle",
      '{"images":{"infrastructure":[{"name":"x:1","file":"../x.tar"}]}}',
      /images\.infrastructure\.0\.file: must be a relative path/,
    ],
    [
      "version not a string",
      '{"images":{"engines":[{"name":"x","version":1,"file":"x.tar"}]}}',
      /images\.engines\.0\.version/,
    ],
  ];
  for (const [name, text, re] of cases) {
    await t.step(name, () => rejects(() => parseScriptManifest(text, "b/manifest.json"), re));
  }
});

Deno.test("parseAdminManifest() finds settings at the top level or under settings", async (t) => {
  await t.step("top-level keys", () => {
    const m = parseAdminManifest(
      JSON.stringify({
        cortex_version: "0.1.1",
        VLLM_IMAGE: "vllm/vllm-openai:latest",
        OFFLINE_MODE: true,
        CORTEX_MODELS_DIR: "/var/cortex/models",
        created_at: 123,
      }),
      "manifest.json",
    );
    assert.equal(m.cortexVersion, "0.1.1");
    assert.deepEqual({ ...m.settings }, {
      VLLM_IMAGE: "vllm/vllm-openai:latest",
      OFFLINE_MODE: "True",
      CORTEX_MODELS_DIR: "/var/cortex/models",
    });
  });
  await t.step("under settings, which wins", () => {
    const m = parseAdminManifest(
      JSON.stringify({
        version: "0.1.1",
        VLLM_IMAGE: "old",
        settings: {
          VLLM_IMAGE: "vllm/vllm-openai:v1",
          HF_CACHE_DIR: "/x",
          OFFLINE_MODE: false,
          N: 2,
          Z: null,
        },
      }),
      "manifest.json",
    );
    assert.equal(m.cortexVersion, "0.1.1");
    assert.deepEqual({ ...m.settings }, {
      VLLM_IMAGE: "vllm/vllm-openai:v1",
      HF_CACHE_DIR: "/x",
      OFFLINE_MODE: "False",
      N: "2",
    });
  });
  await t.step("errors name file and field", () => {
    rejects(
      () => parseAdminManifest('{"VLLM_IMAGE": {"a":1}}', "x/manifest.json"),
      /"x\/manifest.json": VLLM_IMAGE/,
    );
    rejects(() => parseAdminManifest('{"settings": []}', "m.json"), /settings/);
    rejects(() => parseAdminManifest('{"hello": 1}', "m.json"), /no settings found/);
  });
});

Deno.test("manifest shape detection", async (t) => {
  const cases: [string, unknown, boolean, boolean][] = [
    ["script", SCRIPT_MANIFEST, true, false],
    ["admin top-level", { VLLM_IMAGE: "x" }, false, true],
    ["admin nested", { settings: { LLAMACPP_IMAGE: "x" } }, false, true],
    ["neither", { foo: 1 }, false, false],
    ["array", [], false, false],
  ];
  for (const [name, json, script, admin] of cases) {
    await t.step(name, () => {
      assert.equal(isScriptManifestShape(json), script);
      assert.equal(hasAdminSettings(json), admin);
    });
  }
});

Deno.test("isOptional() reads (optional) in the purpose", async (t) => {
  const cases: [string | undefined, boolean][] = [
    ["GPU metrics (optional)", true],
    ["(OPTIONAL) registry", true],
    ["optional", false],
    ["Database", false],
    [undefined, false],
  ];
  for (const [p, want] of cases) await t.step(String(p), () => assert.equal(isOptional(p), want));
});

Deno.test("DockerSaveManifestSchema accepts null RepoTags and rejects bad shapes", () => {
  const ok = DockerSaveManifestSchema.safeParse([
    { Config: "a.json", RepoTags: null, Layers: ["l/layer.tar"] },
  ]);
  assert.equal(ok.success, true);
  const bad = DockerSaveManifestSchema.safeParse([{ Config: "a.json" }]);
  assert.equal(bad.success, false);
});
