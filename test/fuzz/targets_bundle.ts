/**
 * Fuzz targets: the bundle's index files (checksums.sha256, the two 0.1 manifest.json kinds, the
 * 0.2 bundle.json, images.json and model manifests, the release manifest, the checkout's
 * versions.env) and a whole 0.2 bundle folder read by readBundle.
 */
import { join } from "node:path";
import { normalizeBundlePath, parseChecksums } from "../../src/bundle/checksums.ts";
import { parseAdminManifest, parseScriptManifest } from "../../src/bundle/manifests.ts";
import {
  checkModelPath,
  parseBundleJson,
  parseImagesJson,
  parseModelManifest,
} from "../../src/bundle/bundle02.ts";
import { EMBEDDED_MANIFEST_URL, parseReleasePolicies } from "../../src/bundle/release.ts";
import { readBundle } from "../../src/bundle/read.ts";
import { loadReleasePolicies } from "../../src/bundle/release.ts";
import { parseScriptVersionsEnv, parseVersionsEnv } from "../../src/host/checkout.ts";
import { copyBundle, DEFAULT_MODEL, fakeBundle02 } from "../support/bundle02.ts";
import { bytes, mutate, mutateJson, prop, REPO, type Rng, type Target, utf8 } from "./harness.ts";

const PROTO_KEYS = ["__proto__", "constructor", "toString", "hasOwnProperty", "valueOf"];

/** No lookup by a prototype key reaches Object.prototype. */
function noProtoLeak(o: Record<string, unknown>, what: string) {
  for (const k of PROTO_KEYS) {
    const v = o[k];
    prop(
      v === undefined || typeof v === "string" || Object.hasOwn(o, k),
      `${what}[${k}] is inherited`,
    );
    prop(typeof v !== "function", `${what}[${k}] is a function`);
  }
}

const fixture = (rel: string) => Deno.readFileSync(`${REPO}/test/testdata/${rel}`);

/** Seeds read from a 0.2 bundle built by test/support/bundle02.ts (no Docker needed). */
const built: Record<string, Uint8Array[]> = {};
let bundleDir: string | undefined;
let bundleFiles: string[] = [];
let release: Awaited<ReturnType<typeof loadReleasePolicies>> | undefined;

async function setup02() {
  if (bundleDir) return;
  // Fixed labels: the image names in the seeds are the same on every run (a seed reproduces).
  const admin = await fakeBundle02({ variant: "admin-ui", models: [DEFAULT_MODEL], label: "fuzz" });
  const script = await fakeBundle02({ variant: "script", label: "fuzz" });
  const read = (dir: string, rel: string) => Deno.readFileSync(join(dir, rel));
  built["bundle.json"] = [read(admin.dir, "bundle.json"), read(script.dir, "bundle.json")];
  built["images.json"] = [read(admin.dir, "images.json"), read(script.dir, "images.json")];
  built["checksums"] = [read(admin.dir, "checksums.sha256"), read(script.dir, "checksums.sha256")];
  built["model"] = [read(admin.dir, `models/${DEFAULT_MODEL.served}/manifest.json`)];
  await script.cleanup();
  bundleDir = admin.dir;
  bundleFiles = [
    "bundle.json",
    "images.json",
    "checksums.sha256",
    `models/${DEFAULT_MODEL.served}/manifest.json`,
  ];
  release = await loadReleasePolicies();
}

async function teardown02() {
  if (bundleDir) await Deno.remove(bundleDir, { recursive: true }).catch(() => {});
  bundleDir = undefined;
}

const SCRIPT_MANIFEST_01 = JSON.stringify(
  {
    created: "2025-06-01T10:00:00Z",
    cortex_version: "0.1.1",
    prepared_by: "prepare-offline-deployment.sh",
    images: {
      engines: [
        { name: "vllm/vllm-openai", version: "v0.6.3", file: "images/vllm.tar", purpose: "engine" },
        { name: "ghcr.io/ggml-org/llama.cpp", tag: "server-cuda", file: "images/llamacpp.tar" },
      ],
      infrastructure: [
        { name: "postgres:16", file: "images/postgres.tar", purpose: "database" },
        { name: "nvidia/dcgm-exporter", file: "images/dcgm.tar", purpose: "optional metrics" },
      ],
    },
    deployment_notes: ["load images", "start"],
  },
  null,
  2,
);

const ADMIN_MANIFEST_01 = JSON.stringify(
  {
    cortex_version: "0.1.1",
    VLLM_IMAGE: "vllm/vllm-openai:v0.6.3",
    settings: { CORTEX_MODELS_DIR: "/var/cortex/models", OFFLINE_MODE: true, HF_CACHE_DIR: null },
  },
  null,
  2,
);

const CHECKSUMS_01 =
  `${"a".repeat(64)}  images/vllm.tar\n${"B".repeat(64)} *models/m 1/config.json\n` +
  `\\${"c".repeat(64)}  models/odd\\nname\n`;

function seeds(name: string, extra: Uint8Array[] = []): Uint8Array[] {
  return [...(built[name] ?? []), ...extra];
}

/** A JSON target over seeds: structure and byte mutations. */
function jsonGen(seedList: () => Uint8Array[]) {
  return (rng: Rng) => {
    const s = rng.pick(seedList());
    return rng.chance(0.7) ? mutateJson(rng, s) : mutate(rng, s);
  };
}

export const BUNDLE_TARGETS: Target[] = [
  {
    name: "checksums",
    group: "bundle index",
    parser: "parseChecksums (src/bundle/checksums.ts): checksums.sha256",
    onBadInput: "preflight error (exit 3) naming the file and line; verify fails closed",
    property: "every listed path is bundle-relative (no `..`, not absolute, no empty segment); " +
      "every digest is 64 lower-case hex digits",
    setup: setup02,
    teardown: teardown02,
    gen: (rng) => mutate(rng, rng.pick(seeds("checksums", [bytes(CHECKSUMS_01)])), 4),
    check(input) {
      const m = parseChecksums(utf8(input), "checksums.sha256");
      for (const [p, d] of m) {
        prop(/^[0-9a-f]{64}$/.test(d), `digest ${d}`);
        const n = normalizeBundlePath(p);
        prop("path" in n && n.path === p, `path ${JSON.stringify(p)} is not normalized`);
      }
    },
  },
  {
    name: "manifest01-script",
    group: "bundle index",
    parser:
      "parseScriptManifest (src/bundle/manifests.ts): 0.1 `make prepare-offline` manifest.json",
    onBadInput: "preflight error (exit 3) naming the file and the bad field",
    property:
      "every accepted image name is a reference without whitespace or control characters; " +
      "every file is a safe relative path",
    gen: jsonGen(() => [bytes(SCRIPT_MANIFEST_01)]),
    check(input) {
      const m = parseScriptManifest(utf8(input), "manifest.json");
      for (const e of [...m.images.engines, ...m.images.infrastructure]) {
        prop(!/[\s\p{Cc}]/u.test(e.name), `name ${JSON.stringify(e.name)}`);
        prop(!e.file.startsWith("/") && !e.file.split("/").includes(".."), `file ${e.file}`);
      }
    },
  },
  {
    name: "manifest01-admin",
    group: "bundle index",
    parser: "parseAdminManifest (src/bundle/manifests.ts): 0.1 Admin-UI export manifest.json",
    onBadInput: "preflight error (exit 3) naming the file and the bad field",
    property:
      "settings keys are variable names; values are strings; no key reaches Object.prototype",
    gen: jsonGen(() => [bytes(ADMIN_MANIFEST_01)]),
    check(input) {
      const m = parseAdminManifest(utf8(input), "manifest.json");
      for (const [k, v] of Object.entries(m.settings)) {
        prop(/^[A-Za-z_][A-Za-z0-9_]*$/.test(k), `key ${JSON.stringify(k)}`);
        prop(typeof v === "string", `value of ${k}`);
      }
      noProtoLeak(m.settings, "settings");
    },
  },
  {
    name: "bundle-json",
    group: "bundle index",
    parser: "parseBundleJson (src/bundle/bundle02.ts): 0.2 bundle.json",
    onBadInput: "preflight error (exit 3) naming the file and the bad field",
    property: 'an accepted document has kind "cortex-bundle"',
    setup: setup02,
    teardown: teardown02,
    gen: jsonGen(() => seeds("bundle.json")),
    check(input) {
      const b = parseBundleJson(input, "bundle.json");
      prop(b.kind === "cortex-bundle", `kind ${b.kind}`);
    },
  },
  {
    name: "images-json",
    group: "bundle index",
    parser: "parseImagesJson (src/bundle/bundle02.ts): 0.2 images.json",
    onBadInput: "preflight error (exit 3) naming the file and the bad field",
    property: "every ref has no whitespace or control character; every file is a safe bundle path",
    setup: setup02,
    teardown: teardown02,
    gen: jsonGen(() => seeds("images.json")),
    check(input) {
      for (const e of parseImagesJson(input, "images.json")) {
        prop(!/[\s\p{Cc}]/u.test(e.ref), `ref ${JSON.stringify(e.ref)}`);
        prop(!e.file.startsWith("/") && !e.file.split("/").includes(".."), `file ${e.file}`);
      }
    },
  },
  {
    name: "model-manifest",
    group: "bundle index",
    parser: "parseModelManifest (src/bundle/bundle02.ts): 0.2 models/<name>/manifest.json",
    onBadInput: "preflight error (exit 3); unsafe file paths refuse the model (verify fails)",
    property: "sizes are non-negative integers; checkModelPath refuses absolute and `..` paths",
    setup: setup02,
    teardown: teardown02,
    gen: jsonGen(() => seeds("model")),
    check(input) {
      const m = parseModelManifest(input, "manifest.json");
      for (const f of m.files) {
        prop(Number.isSafeInteger(f.bytes) && f.bytes >= 0, `bytes ${f.bytes}`);
        const c = checkModelPath(f.path);
        if ("path" in c) {
          prop(!c.path.startsWith("/") && !c.path.split("/").includes(".."), `path ${c.path}`);
        }
      }
    },
  },
  {
    name: "release-manifest",
    group: "bundle index",
    parser: "parseReleasePolicies (src/bundle/release.ts): --manifest and the embedded policy",
    onBadInput: "preflight error (exit 3) naming the file and the bad field; over 1 MiB refused",
    property: "every env key is a variable name; pins are 64-hex digests",
    gen: jsonGen(() => [Deno.readFileSync(EMBEDDED_MANIFEST_URL)]),
    check(input) {
      const p = parseReleasePolicies(utf8(input), "manifest.json");
      for (const l of p.lines) {
        for (const map of [l.env.offline, l.env.online, l.env.paths]) {
          for (const k of Object.keys(map)) {
            prop(/^[A-Za-z_][A-Za-z0-9_]*$/.test(k), `env key ${JSON.stringify(k)}`);
          }
        }
        for (const d of Object.values(l.pins)) prop(/^[0-9a-f]{64}$/.test(d), `pin ${d}`);
      }
    },
  },
  {
    name: "versions-env",
    group: "bundle index",
    parser: "parseVersionsEnv / parseScriptVersionsEnv (src/host/checkout.ts): versions.env",
    onBadInput: "lines that are not assignments are skipped; never an exception",
    property:
      "never throws; keys are variable names, values strings; no key reaches Object.prototype",
    gen: (rng) =>
      mutate(
        rng,
        rng.pick([
          fixture("cortex-v0.2.0/versions.env"),
          fixture("cortex-v0.1.1/scripts/versions.env"),
        ]),
        4,
      ),
    check(input) {
      for (const r of [parseVersionsEnv(utf8(input)), parseScriptVersionsEnv(utf8(input))]) {
        for (const [k, v] of Object.entries(r)) {
          prop(/^[A-Za-z_][A-Za-z0-9_]*$/.test(k), `key ${JSON.stringify(k)}`);
          prop(typeof v === "string", `value of ${k}`);
        }
        noProtoLeak(r, "versions");
      }
    },
  },
  {
    name: "bundle02-folder",
    group: "bundle index",
    parser:
      "readBundle (src/bundle/read.ts, read02.ts): a whole 0.2 bundle folder, one index file damaged",
    onBadInput:
      "preflight error (exit 3) for unreadable indexes; integrity problems listed for verify (exit 4)",
    property:
      "every bundle file path is relative and inside the folder; a file listed with a digest " +
      "keeps a 64-hex digest",
    weight: 0.3,
    setup: setup02,
    teardown: teardown02,
    gen(rng) {
      // The case: which index file, then its new bytes.
      const i = rng.int(bundleFiles.length);
      const orig = Deno.readFileSync(join(bundleDir!, bundleFiles[i]));
      const body = bundleFiles[i].endsWith(".json") && rng.chance(0.7)
        ? mutateJson(rng, orig)
        : mutate(rng, orig);
      return new Uint8Array([i, ...body]);
    },
    async check(input) {
      const dir = await copyBundle(bundleDir!);
      try {
        await Deno.writeFile(
          join(dir, bundleFiles[input[0] % bundleFiles.length]),
          input.subarray(1),
        );
        const b = await readBundle(dir, release!);
        for (const f of b.files) {
          prop(!f.path.startsWith("/") && !f.path.split("/").includes(".."), `path ${f.path}`);
          prop(f.abs.startsWith(dir + "/"), `abs ${f.abs}`);
          if (f.expected) {
            prop(/^[0-9a-f]{64}$/.test(f.expected.sha256), `expected ${f.expected.sha256}`);
          }
        }
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  },
];
