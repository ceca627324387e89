import { assert, assertEquals, assertMatch, assertThrows } from "../../test/support/assert.ts";
import { InstallError } from "../errors.ts";
import {
  bundleTarName,
  checkModelPath,
  isScriptBundle,
  parseBundleJson,
  parseImagesJson,
  parseModelManifest,
} from "./bundle02.ts";

// The examples of cortex-0.2-facts §1 (a UI export: one vLLM model, a DB dump), as written.
const BUNDLE_JSON =
  `{"schema_version": 1, "kind": "cortex-bundle", "created_at": "2026-09-10T08:15:02Z", "cortex_version": "0.2.0",
 "source_host": "gpu-lab-01", "notes": "", "engine_defaults": {"vllm": "vllm/vllm-openai:v0.28.0",
 "llamacpp": "ghcr.io/ggml-org/llama.cpp:server-cuda-b10731"},
 "contents": {"images": [], "models": [{"served_model_name": "qwen2.5-7b",
  "name": "Qwen2.5 7B", "engine_type": "vllm", "engine_image": "vllm/vllm-openai:v0.28.0",
  "files_included": true, "size_bytes": 15231272913}], "program": false, "db_dump": true},
 "size_bytes": 36751802345}`;
const IMAGES_JSON =
  `[{"ref": "vllm/vllm-openai:v0.28.0", "id": "sha256:a172b6906db3afd1f942a5ad435109a931e6c4cf29f09704bc80732e6020c9bf",
  "size_bytes": 21474836480, "tar_bytes": 21503229440,
  "sha256": "2fc1961c1a0c8cc9369f4fccc5afc0afdef998b8a3d3eb8ffcb210bad10dedfb",
  "digests": ["vllm/vllm-openai@sha256:60d061100250738cbba9047fd927c39dcb3198a70f7b301dcfe4734167cb5f24"],
  "role": "engine", "file": "images/vllm_vllm-openai__v0.28.0.tar"}]`;
const MANIFEST_JSON =
  `{"schema_version": 1, "type": "cortex_model_export", "exported_at": "2026-09-10T08:14:40Z",
 "source_model_id": 3, "name": "Qwen2.5 7B", "served_model_name": "qwen2.5-7b", "task": "generate",
 "engine_type": "vllm", "engine_image": "vllm/vllm-openai:v0.28.0", "mode": "offline", "repo_id": null,
 "local_path": "Qwen2.5-7B-Instruct", "config": {"selected_gpus": [0], "dtype": "auto", "max_model_len": 32768},
 "files": [{"path": "Qwen2.5-7B-Instruct/config.json", "bytes": 663,
   "sha256": "2bd7ab86cd20723e86e593ce64008f9b2b778517432092d1e24a9e8d7801b086"},
  {"path": "Qwen2.5-7B-Instruct/model.safetensors", "bytes": 15231272250,
   "sha256": "ee9856da7e17a5e8cabe65c4fce19a03ce2eb96e82d11ef65747a6e3cfe638b2"}],
 "files_included": true}`;

Deno.test("parseBundleJson() reads the facts' example and keeps unknown keys", () => {
  const b = parseBundleJson(BUNDLE_JSON, "bundle.json");
  assertEquals(b.kind, "cortex-bundle");
  assertEquals(b.cortex_version, "0.2.0");
  assertEquals(b.contents?.db_dump, true);
  assertEquals((b as Record<string, unknown>).source_host, "gpu-lab-01");
  assertEquals(
    isScriptBundle(b, ["bundle.json", "images.json", "models/qwen2.5-7b/manifest.json"]),
    false,
  );
});

Deno.test("parseBundleJson(): key order, dev version, script notes", () => {
  const b = parseBundleJson(
    '{"contents":{"wheels":false,"models":[]},"cortex_version":"dev","kind":"cortex-bundle"}',
    "bundle.json",
  );
  assertEquals(b.cortex_version, "dev");
  assertEquals(isScriptBundle(b, []), true, "contents.wheels marks the script");
  const n = parseBundleJson(
    '{"kind":"cortex-bundle","notes":"program bundle (scripts/prepare-offline-deployment.sh); optional images not included: nvidia/dcgm-exporter"}',
    "bundle.json",
  );
  assertEquals(isScriptBundle(n, []), true, "notes mark the script");
  const bare = parseBundleJson('{"kind":"cortex-bundle"}', "bundle.json");
  assertEquals(isScriptBundle(bare, ["versions.env"]), true, "versions.env marks the script");
  assertEquals(isScriptBundle(bare, ["wheels/x.whl"]), true, "wheels/ marks the script");
  assertEquals(isScriptBundle(bare, ["images.json"]), false);
});

Deno.test("parseBundleJson() refuses another kind, a missing kind and bad JSON (exit 3)", async (t) => {
  const cases: [string, RegExp][] = [
    ['{"kind":"zarf"}', /kind is "zarf", a Cortex bundle's is "cortex-bundle"/],
    ['{"schema_version":1}', /kind is missing/],
    ["{not json", /not valid JSON/],
    ['{"kind":"cortex-bundle","contents":{"wheels":"yes"}}', /contents\.wheels/],
  ];
  for (const [text, re] of cases) {
    await t.step(text, () => {
      const e = assertThrows(() => parseBundleJson(text, "/b/bundle.json"), InstallError);
      assertEquals(e.exitCode, 3);
      assertMatch(e.message, /"\/b\/bundle\.json"/);
      assertMatch(e.message, re);
    });
  }
});

Deno.test("parseImagesJson() reads the facts' example; digests may be empty; ids are checked", () => {
  const [e] = parseImagesJson(IMAGES_JSON, "images.json");
  assertEquals(e.ref, "vllm/vllm-openai:v0.28.0");
  assertEquals(e.role, "engine");
  assertEquals(e.tar_bytes, 21503229440);
  const [u] = parseImagesJson(
    JSON.stringify([{
      file: "images/cortex-gateway__0.2.0.tar",
      digests: [],
      role: "program",
      ref: "cortex-gateway:0.2.0",
      sha256: "AB".repeat(32),
      id: "sha256:" + "1".repeat(64),
    }]),
    "images.json",
  );
  assertEquals(u.digests, []);
  assertEquals(u.sha256, "ab".repeat(32), "upper-case hex is read lower-cased");
  assertThrows(
    () => parseImagesJson('[{"ref":"x:1","file":"../x.tar"}]', "images.json"),
    InstallError,
    /0\.file: must be a relative path inside the bundle/,
  );
  assertThrows(
    () => parseImagesJson('[{"ref":"x:1","file":"images/x.tar","id":"abc"}]', "images.json"),
    InstallError,
    /0\.id/,
  );
});

Deno.test("parseModelManifest() reads the facts' example: per-file bytes, not size", () => {
  const m = parseModelManifest(MANIFEST_JSON, "manifest.json");
  assertEquals(m.served_model_name, "qwen2.5-7b");
  assertEquals(m.local_path, "Qwen2.5-7B-Instruct");
  assertEquals(m.files.map((f) => [f.path, f.bytes]), [
    ["Qwen2.5-7B-Instruct/config.json", 663],
    ["Qwen2.5-7B-Instruct/model.safetensors", 15231272250],
  ]);
  assertThrows(
    () =>
      parseModelManifest(
        '{"served_model_name":"m","files":[{"path":"m/a","size":3}]}',
        "manifest.json",
      ),
    InstallError,
    /files\.0\.bytes/,
  );
});

Deno.test("checkModelPath() refuses what could land outside its folder", async (t) => {
  const ok: [string, string][] = [
    ["Qwen/config.json", "Qwen/config.json"],
    ["./Qwen//a.bin", "Qwen/a.bin"],
    ["model.gguf", "model.gguf"],
  ];
  for (const [raw, want] of ok) {
    await t.step(`ok ${raw}`, () => assertEquals(checkModelPath(raw), { path: want }));
  }
  for (const raw of ["../x", "a/../../x", "/etc/passwd", ".hidden/x", "a\\..\\b", "a\0b", ""]) {
    await t.step(`refused ${JSON.stringify(raw)}`, () => assert("error" in checkModelPath(raw)));
  }
});

Deno.test("bundleTarName() is Cortex's sanitized name", () => {
  assertEquals(bundleTarName("vllm/vllm-openai:v0.28.0"), "vllm_vllm-openai__v0.28.0.tar");
  assertEquals(bundleTarName("repo@sha256:ab"), "repo_at_sha256__ab.tar");
});
