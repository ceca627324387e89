import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { InstallError } from "../errors.ts";
import { parseReleaseManifest, type ReleaseManifest } from "./release.ts";
import {
  adminImageFileName,
  bundleDigest,
  detectFormat,
  guessRefFromAdminFile,
  readBundle,
} from "./read.ts";
import { dockerSaveTar, sha256 } from "../../test/support/tarbuild.ts";

const RELEASE: ReleaseManifest = parseReleaseManifest(
  JSON.stringify({
    schema: 1,
    release: "0.1.1",
    images: [
      { role: "vllm", repository: "vllm/vllm-openai", critical: true, envKey: "VLLM_IMAGE" },
      { role: "llamacpp", repository: "ghcr.io/ggml-org/llama.cpp", critical: true },
      { role: "postgres", repository: "postgres", critical: true },
      { role: "prometheus", repository: "prom/prometheus", critical: false },
      { role: "dcgm-exporter", repository: "nvidia/dcgm-exporter", critical: false },
      { role: "gateway", repository: "cortex-gateway", critical: true },
    ],
    env: { offline: {}, online: {}, paths: {} },
    readiness: [],
    pins: {},
  }),
  "test release",
);

const withPins = (pins: Record<string, string>): ReleaseManifest => ({ ...RELEASE, pins });

function imageTar(ref: string): Uint8Array {
  return dockerSaveTar([{ repoTags: [ref], layers: [`layer of ${ref}`] }], "legacy").tar;
}

type Tree = Record<string, Uint8Array | string>;

async function makeBundle(tree: Tree): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "cit-read-" });
  for (const [rel, data] of Object.entries(tree)) {
    const p = join(dir, rel);
    await Deno.mkdir(dirname(p), { recursive: true });
    if (typeof data === "string") await Deno.writeTextFile(p, data);
    else await Deno.writeFile(p, data);
  }
  return dir;
}

function checksumsOf(tree: Tree, paths: string[], star = false): string {
  const enc = new TextEncoder();
  return paths.map((p) => {
    const d = tree[p];
    const bytes = typeof d === "string" ? enc.encode(d) : d;
    return `${sha256(bytes)} ${star ? "*" : " "}${p}\n`;
  }).join("");
}

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
        purpose: "vLLM",
      },
      {
        name: "ghcr.io/ggml-org/llama.cpp",
        tag: "server-cuda",
        file: "llamacpp-server-cuda.tar",
        purpose: "llama.cpp",
      },
    ],
    infrastructure: [
      { name: "postgres:16", file: "postgres-16.tar", purpose: "Database" },
      { name: "redis:7", file: "redis-7.tar", purpose: "Cache" },
      { name: "prom/prometheus:v2.47.0", file: "prometheus-v2.47.0.tar", purpose: "Metrics" },
      {
        name: "nvidia/dcgm-exporter",
        file: "dcgm-exporter.tar",
        purpose: "GPU metrics (optional)",
      },
      { name: "registry:2", file: "registry-2.tar", purpose: "Local registry (optional)" },
    ],
  },
  deployment_notes: { load_command: "make load-offline" },
};

function scriptTree(): Tree {
  const tree: Tree = {
    "vllm-openai-v0.6.3.tar": imageTar("vllm/vllm-openai:v0.6.3"),
    "llamacpp-server-cuda.tar": imageTar("ghcr.io/ggml-org/llama.cpp:server-cuda"),
    "postgres-16.tar": imageTar("postgres:16"),
    "redis-7.tar": imageTar("redis:7"),
    "prometheus-v2.47.0.tar": imageTar("prom/prometheus:v2.47.0"),
    "dcgm-exporter.tar": imageTar("nvidia/dcgm-exporter:3.3.5-3.4.0-ubuntu22.04"),
    // registry-2.tar is optional and absent; redis-7.tar will be made absent in one case.
    "models/tiny-llama/config.json": "{}",
    "models/tiny-llama/model.safetensors": "weights",
    "README.txt": "readme",
  };
  tree["manifest.json"] = JSON.stringify(SCRIPT_MANIFEST, null, 2);
  const tars = Object.keys(tree).filter((p) => p.endsWith(".tar"));
  tree["checksums.sha256"] = checksumsOf(tree, [...tars, "models/tiny-llama/config.json"]);
  return tree;
}

Deno.test("readBundle() reads a make prepare-offline package", async (t) => {
  const tree = scriptTree();
  const dir = await makeBundle(tree);
  try {
    const b = await readBundle(dir, RELEASE);
    await t.step("format and version", () => {
      assert.equal(b.format, "script");
      assert.equal(b.cortexVersion, "0.1.1");
      assert.equal(b.hasChecksums, true);
      assert.equal(b.dir, dir);
    });
    await t.step("images with refs, roles and criticality", () => {
      assert.deepEqual(
        b.images.map((i) => [i.file, i.declaredRefs, i.critical, i.role ?? null]),
        [
          ["vllm-openai-v0.6.3.tar", ["vllm/vllm-openai:v0.6.3"], true, "vllm"],
          [
            "llamacpp-server-cuda.tar",
            ["ghcr.io/ggml-org/llama.cpp:server-cuda"],
            true,
            "llamacpp",
          ],
          ["postgres-16.tar", ["postgres:16"], true, "postgres"],
          // Not in the release manifest: Cortex's own rule makes redis critical.
          ["redis-7.tar", ["redis:7"], true, null],
          ["prometheus-v2.47.0.tar", ["prom/prometheus:v2.47.0"], false, "prometheus"],
          // The dcgm trap: no tag declared, the tar's RepoTags decide.
          ["dcgm-exporter.tar", [], false, "dcgm-exporter"],
        ],
      );
      assert.equal(b.images[5].purpose, "GPU metrics (optional)");
    });
    await t.step("an absent optional image is a warning, not missing", () => {
      assert.deepEqual(b.missing, []);
      assert.equal(b.warnings.length, 1);
      assert.match(b.warnings[0], /Optional image "registry:2" \("registry-2.tar"\)/);
      assert.equal(b.files.find((f) => f.path === "registry-2.tar"), undefined);
    });
    await t.step("files carry sizes, kinds and checksums", () => {
      const pg = b.files.find((f) => f.path === "postgres-16.tar")!;
      assert.equal(pg.size, (tree["postgres-16.tar"] as Uint8Array).length);
      assert.equal(pg.kind, "image");
      assert.equal(pg.abs, join(dir, "postgres-16.tar"));
      assert.deepEqual(pg.expected, {
        sha256: sha256(tree["postgres-16.tar"] as Uint8Array),
        source: "checksums",
      });
      assert.deepEqual(b.files.map((f) => f.path), [
        "dcgm-exporter.tar",
        "llamacpp-server-cuda.tar",
        "models/tiny-llama/config.json",
        "models/tiny-llama/model.safetensors",
        "postgres-16.tar",
        "prometheus-v2.47.0.tar",
        "redis-7.tar",
        "vllm-openai-v0.6.3.tar",
      ]);
    });
    await t.step("a model file no checksum covers is unlisted", () => {
      assert.deepEqual(b.unlisted, ["models/tiny-llama/model.safetensors"]);
    });
    await t.step("model folders", () => {
      assert.deepEqual(b.models, [{
        kind: "folder",
        name: "tiny-llama",
        path: "models/tiny-llama",
      }]);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("readBundle() finds missing and unlisted files", async (t) => {
  const tree = scriptTree();
  delete tree["redis-7.tar"]; // listed in manifest and checksums, absent
  tree["extra-7.tar"] = imageTar("extra:7"); // not in manifest, not in checksums
  tree["checksums.sha256"] += `${"c".repeat(64)}  gone/model.bin\n`;
  const dir = await makeBundle(tree);
  try {
    const b = await readBundle(dir, RELEASE);
    await t.step("missing", () => assert.deepEqual(b.missing, ["gone/model.bin", "redis-7.tar"]));
    await t.step("the missing image has no size", () => {
      const f = b.files.find((f) => f.path === "redis-7.tar")!;
      assert.equal(f.size, undefined);
      assert.equal(f.kind, "image");
      assert.ok(!b.images.some((i) => i.file === "redis-7.tar"));
    });
    await t.step("unlisted", () => {
      assert.deepEqual(b.unlisted, ["extra-7.tar", "models/tiny-llama/model.safetensors"]);
    });
    await t.step("an extra tar is an image with no declared refs", () => {
      const img = b.images.find((i) => i.file === "extra-7.tar")!;
      assert.deepEqual(img.declaredRefs, []);
      assert.ok(b.warnings.some((w) => /"extra-7.tar" is not listed/.test(w)));
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("readBundle() prefers a release pin over checksums.sha256", async (t) => {
  const tree = scriptTree();
  const pin = "d".repeat(64);
  const dir = await makeBundle(tree);
  try {
    const b = await readBundle(
      dir,
      withPins({ "postgres-16.tar": pin, "models/tiny-llama/model.safetensors": "e".repeat(64) }),
    );
    await t.step("pin beats checksums", () => {
      const pg = b.files.find((f) => f.path === "postgres-16.tar")!;
      assert.deepEqual(pg.expected, { sha256: pin, source: "pin" });
    });
    await t.step("checksums still used elsewhere", () => {
      assert.equal(b.files.find((f) => f.path === "redis-7.tar")!.expected?.source, "checksums");
    });
    await t.step(
      "a pinned model file is no longer unlisted",
      () => assert.deepEqual(b.unlisted, []),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("readBundle() reads an Admin-UI export", async (t) => {
  const tree: Tree = {
    "manifest.json": JSON.stringify({
      created_at: "2026-01-18T12:00:00Z",
      settings: {
        VLLM_IMAGE: "vllm/vllm-openai:latest",
        LLAMACPP_IMAGE: "ghcr.io/ggml-org/llama.cpp:server",
        CORTEX_MODELS_DIR: "/var/cortex/models",
        OFFLINE_MODE: true,
      },
    }),
    "status.json": '{"status":"completed"}',
    "images/vllm_vllm-openai__latest.tar": imageTar("vllm/vllm-openai:latest"),
    "images/cortex-gateway.tar": imageTar("cortex-gateway:latest"),
    "images/prom_node-exporter__v1.6.1.tar": imageTar("prom/node-exporter:v1.6.1"),
    "db/cortex.sql": "-- dump with secrets\n",
    "manifests/models.json": "[]",
    "models.tar.gz": "gz",
    "hf-cache.tar.gz": "gz",
    "model-7-files.tar.gz": "gz",
  };
  const listed = Object.keys(tree).filter((p) => p !== "manifest.json" && p !== "status.json")
    .sort();
  tree["checksums.sha256"] = checksumsOf(tree, listed.filter((p) => p !== "hf-cache.tar.gz"), true);
  const dir = await makeBundle(tree);
  try {
    const b = await readBundle(dir, RELEASE);
    await t.step("format and settings", () => {
      assert.equal(b.format, "admin-ui");
      assert.deepEqual({ ...b.settings }, {
        VLLM_IMAGE: "vllm/vllm-openai:latest",
        LLAMACPP_IMAGE: "ghcr.io/ggml-org/llama.cpp:server",
        CORTEX_MODELS_DIR: "/var/cortex/models",
        OFFLINE_MODE: "True",
      });
    });
    await t.step("images from images/*.tar", () => {
      assert.deepEqual(
        b.images.map((i) => [i.file, i.declaredRefs, i.critical, i.role ?? null]),
        [
          ["images/cortex-gateway.tar", [], true, "gateway"],
          ["images/prom_node-exporter__v1.6.1.tar", [], false, null],
          ["images/vllm_vllm-openai__latest.tar", ["vllm/vllm-openai:latest"], true, "vllm"],
        ],
      );
    });
    await t.step("model archives", () => {
      assert.deepEqual(b.models, [
        { kind: "hf-cache-archive", path: "hf-cache.tar.gz" },
        { kind: "model-archive", id: "7", path: "model-7-files.tar.gz" },
        { kind: "models-archive", path: "models.tar.gz" },
      ]);
    });
    await t.step("kinds, unlisted and missing", () => {
      const kinds = Object.fromEntries(b.files.map((f) => [f.path, f.kind]));
      assert.equal(kinds["db/cortex.sql"], "db");
      assert.equal(kinds["manifests/models.json"], "manifest");
      assert.equal(kinds["models.tar.gz"], "archive");
      assert.equal(kinds["status.json"], undefined);
      assert.deepEqual(b.unlisted, ["hf-cache.tar.gz"]);
      assert.deepEqual(b.missing, []);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("readBundle() reads a plain folder of docker save tars", async () => {
  const tree: Tree = {
    "postgres-16.tar": imageTar("postgres:16"),
    "busy.tar.gz": "not really gz",
    "other.tgz": "x",
    "notes.txt": "hello",
    "sub/ignored.tar": "x",
  };
  tree["checksums.sha256"] = checksumsOf(tree, ["postgres-16.tar", "busy.tar.gz"]);
  const dir = await makeBundle(tree);
  try {
    const b = await readBundle(dir, RELEASE);
    assert.equal(b.format, "folder");
    assert.deepEqual(
      b.images.map((i) => [i.file, i.critical]),
      [["busy.tar.gz", false], ["other.tgz", false], ["postgres-16.tar", true]],
    );
    assert.deepEqual(b.unlisted, ["other.tgz"]);
    assert.equal(b.settings, undefined);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("readBundle() refuses what is not a bundle", async (t) => {
  const cases: { name: string; tree?: Tree; path?: string; re: RegExp }[] = [
    { name: "missing folder", path: "/nonexistent/cit-read-bundle", re: /no such folder/ },
    { name: "empty folder", tree: {}, re: /no manifest.json and no image tars/ },
    { name: "only text files", tree: { "a.txt": "x" }, re: /no manifest.json and no image tars/ },
    {
      name: "unknown manifest",
      tree: { "manifest.json": '{"hello": 1}', "a.tar": "x" },
      re: /neither a `make prepare-offline` manifest/,
    },
    { name: "manifest not JSON", tree: { "manifest.json": "{" }, re: /not valid JSON/ },
    {
      name: "bad script manifest",
      tree: { "manifest.json": '{"images": {"engines": [{"name": "x"}]}}' },
      re: /manifest\.json": images\.engines\.0\.file/,
    },
    {
      name: "bad checksums line",
      tree: { "a.tar": "x", "checksums.sha256": "oops\n" },
      re: /checksums\.sha256": line 1/,
    },
  ];
  for (const c of cases) {
    await t.step(c.name, async () => {
      const dir = c.path ?? await makeBundle(c.tree!);
      try {
        await assert.rejects(readBundle(dir, RELEASE), (e: unknown) => {
          assert.ok(e instanceof InstallError, String(e));
          assert.equal(e.exitCode, 3);
          assert.match(e.message, c.re);
          return true;
        });
      } finally {
        if (!c.path) await Deno.remove(dir, { recursive: true });
      }
    });
  }
  await t.step("a file instead of a folder", async () => {
    const f = await Deno.makeTempFile({ prefix: "cit-read-" });
    try {
      await assert.rejects(readBundle(f, RELEASE), /not a folder/);
    } finally {
      await Deno.remove(f);
    }
  });
});

Deno.test("detectFormat() by manifest shape and files", async (t) => {
  const cases: [string, unknown, string[], string | undefined][] = [
    ["script manifest", { images: { engines: [] } }, ["a.tar"], "script"],
    ["admin settings", { VLLM_IMAGE: "x" }, [], "admin-ui"],
    ["admin by images/ dir", { created: 1 }, ["images/x.tar"], "admin-ui"],
    ["admin by status.json", { created: 1 }, ["status.json"], "admin-ui"],
    ["no manifest, top-level tars", undefined, ["x.tgz"], "folder"],
    ["no manifest, images/ tars", undefined, ["images/x.tar"], "admin-ui"],
    ["nothing", undefined, ["x.txt", "deep/a/b.tar"], undefined],
  ];
  for (const [name, m, paths, want] of cases) {
    await t.step(name, () => assert.equal(detectFormat(m, paths), want));
  }
});

Deno.test("Admin-UI image file names", async (t) => {
  await t.step("encode", () => {
    assert.equal(adminImageFileName("vllm/vllm-openai:latest"), "vllm_vllm-openai__latest.tar");
    assert.equal(adminImageFileName("cortex-gateway"), "cortex-gateway.tar");
  });
  await t.step("guess back", () => {
    assert.equal(
      guessRefFromAdminFile("images/vllm_vllm-openai__latest.tar"),
      "vllm/vllm-openai:latest",
    );
    assert.equal(guessRefFromAdminFile("images/cortex-gateway.tar"), "cortex-gateway");
  });
});

Deno.test("bundleDigest() hashes manifest.json then checksums.sha256", async (t) => {
  const dir = await makeBundle({ "manifest.json": "M", "checksums.sha256": "C", "a.tar": "x" });
  try {
    await t.step(
      "both files",
      async () => assert.equal(await bundleDigest(dir), `sha256:${sha256("MC")}`),
    );
    await t.step("changes when checksums change", async () => {
      await Deno.writeTextFile(join(dir, "checksums.sha256"), "C2");
      assert.equal(await bundleDigest(dir), `sha256:${sha256("MC2")}`);
    });
    await t.step("checksums only", async () => {
      await Deno.remove(join(dir, "manifest.json"));
      assert.equal(await bundleDigest(dir), `sha256:${sha256("C2")}`);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
