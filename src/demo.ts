/**
 * The demo: a Cortex "script" offline package (`make prepare-offline` shape) made of busybox
 * stand-ins named like Cortex's images, under the `cortex-demo/` namespace so that a demo never
 * touches a real user's `postgres:16` or `cortex-gateway`. `buildDemo` writes the bundle (one real
 * `docker save` tar per image, manifest.json, checksums.sha256, a tiny model folder), a Cortex dir
 * (assets/demo compose + backend env files) and the release manifest into one folder; the demo
 * command then runs the real `install` on it.
 */
import { join } from "node:path";
import type { Context } from "./context.ts";
import { inspectImages, removeImages, runCommand, tail } from "./docker.ts";
import { dockerError, preflightError, throwIfAborted } from "./errors.ts";
import { hashFile } from "./hash.ts";
import {
  BACKEND_ENV,
  BUNDLE_MANIFEST,
  CHECKSUMS_FILE,
  COMPOSE_PROD,
  DEFAULT_BUNDLE_DIR,
  DEFAULT_CORTEX_DIR,
  MODELS_DIR,
} from "./layout.ts";
import { exists } from "./fsutil.ts";

/** Where `buildDemo` put things. */
export interface DemoPaths {
  /** The script-format offline package (`cortex-offline-images/`). */
  bundleDir: string;
  /** The demo Cortex checkout (compose file, backend/.env, backend/.env.prod). */
  cortexDir: string;
  /** Target dirs for the install: models, HF cache, state journal. */
  modelsDir: string;
  hfCacheDir: string;
  stateDir: string;
  /** The demo release manifest (for `--manifest`). */
  manifestPath: string;
}

/** What `buildDemo` did. */
export interface DemoResult extends DemoPaths {
  /** False when a complete bundle was already there and was reused. */
  built: boolean;
  /** Image refs in the bundle. */
  images: string[];
}

/** One demo image and how Cortex's script package lists it. */
export interface DemoImage {
  /** Repository without the namespace, e.g. `postgres`. */
  repo: string;
  tag: string;
  /** File name in the package, Cortex style. */
  file: string;
  section: "engines" | "infrastructure";
  /** For engines: "version" (vLLM) or "tag" (llama.cpp) carries the tag, as in Cortex. */
  tagField?: "version" | "tag";
  purpose: string;
}

export const DEMO_NAMESPACE = "cortex-demo";
export const DEMO_MODEL = "tiny-demo";

/** The demo images; prometheus ships v2.47.0 while compose runs :latest (a retag). */
export const DEMO_IMAGES: DemoImage[] = [
  {
    repo: "vllm-openai",
    tag: "v0.6.3",
    file: "vllm-openai-v0.6.3.tar",
    section: "engines",
    tagField: "version",
    purpose: "vLLM inference engine (demo stand-in)",
  },
  {
    repo: "llama.cpp",
    tag: "server-cuda",
    file: "llamacpp-server-cuda.tar",
    section: "engines",
    tagField: "tag",
    purpose: "llama.cpp inference engine (demo stand-in)",
  },
  {
    repo: "postgres",
    tag: "16",
    file: "postgres-16.tar",
    section: "infrastructure",
    purpose: "Database (demo stand-in)",
  },
  {
    repo: "redis",
    tag: "7",
    file: "redis-7.tar",
    section: "infrastructure",
    purpose: "Cache (demo stand-in)",
  },
  {
    repo: "cortex-gateway",
    tag: "latest",
    file: "cortex-gateway.tar",
    section: "infrastructure",
    purpose: "Cortex API gateway (demo stand-in)",
  },
  {
    repo: "prometheus",
    tag: "v2.47.0",
    file: "prometheus-v2.47.0.tar",
    section: "infrastructure",
    purpose: "Metrics (optional) (demo stand-in)",
  },
];

/** The full ref of a demo image in a namespace. */
export function demoRef(img: DemoImage, namespace = DEMO_NAMESPACE): string {
  return `${namespace}/${img.repo}:${img.tag}`;
}

/** The package's manifest.json in Cortex's script shape (cortex-facts §1.1). */
export function demoScriptManifest(created: Date, namespace = DEMO_NAMESPACE): unknown {
  const engines = DEMO_IMAGES.filter((i) => i.section === "engines").map((i) => ({
    name: `${namespace}/${i.repo}`,
    [i.tagField ?? "version"]: i.tag,
    file: i.file,
    purpose: i.purpose,
  }));
  const infrastructure = DEMO_IMAGES.filter((i) => i.section === "infrastructure").map((i) => ({
    name: demoRef(i, namespace),
    file: i.file,
    purpose: i.purpose,
  }));
  return {
    created: created.toISOString().replace(/\.\d{3}Z$/, "Z"),
    cortex_version: "0.1.1-demo",
    prepared_by: "cortex-install demo",
    images: { engines, infrastructure },
    deployment_notes: {
      transfer_methods: ["this folder, as it is"],
      load_command: "cortex-install install --bundle <this folder>",
      verify_command: "cortex-install verify --bundle <this folder>",
    },
  };
}

/** `checksums.sha256` text: `<hex>  <path>` lines, sorted by path (sha256sum -c format). */
export function renderChecksums(entries: { path: string; sha256: string }[]): string {
  return [...entries]
    .sort((a, b) => a.path < b.path ? -1 : a.path > b.path ? 1 : 0)
    .map((e) => `${e.sha256}  ${e.path}\n`)
    .join("");
}

/** A valid, tiny safetensors file: 8-byte little-endian header length, JSON header, data. */
export function tinySafetensors(): Uint8Array {
  const header = JSON.stringify({
    __metadata__: { format: "pt" },
    weight: { dtype: "F32", shape: [2, 2], data_offsets: [0, 16] },
  });
  const h = new TextEncoder().encode(header.padEnd(Math.ceil(header.length / 8) * 8, " "));
  const out = new Uint8Array(8 + h.length + 16);
  new DataView(out.buffer).setBigUint64(0, BigInt(h.length), true);
  out.set(h, 8);
  new DataView(out.buffer).setFloat32(8 + h.length, 1, true);
  new DataView(out.buffer).setFloat32(8 + h.length + 12, 1, true);
  return out;
}

/** The tiny demo model's files (not a real model: a valid safetensors of 4 floats). */
export const MODEL_FILES: Record<string, () => Uint8Array> = {
  "config.json": () =>
    new TextEncoder().encode(
      JSON.stringify(
        {
          architectures: ["LlamaForCausalLM"],
          model_type: "llama",
          hidden_size: 2,
          num_hidden_layers: 1,
          vocab_size: 4,
          _comment: "cortex-install demo model: not a real model",
        },
        null,
        2,
      ) + "\n",
    ),
  "tokenizer.json": () =>
    new TextEncoder().encode(
      JSON.stringify({
        version: "1.0",
        model: { type: "WordLevel", vocab: { "<unk>": 0, hello: 1, cortex: 2, demo: 3 } },
      }) + "\n",
    ),
  "model.safetensors": tinySafetensors,
};

const ASSETS = new URL("../assets/demo/", import.meta.url);
/** Demo Cortex dir files, copied from assets/demo/. */
const CORTEX_FILES = [COMPOSE_PROD, BACKEND_ENV, "backend/.env.prod"];
export const BUSYBOX = "/bin/busybox";
const APPLETS = [
  "sh",
  "httpd",
  "wget",
  "env",
  "cat",
  "sleep",
  "mkdir",
  "grep",
  "sort",
  "ls",
  "echo",
  "true",
];

/**
 * Makes sure a Docker engine answers. When `docker info` fails and we are root, starts dockerd
 * loopback-only (no bridge, no iptables) as environment.md says and waits up to ~20 s; otherwise
 * throws a Docker error (exit 5) with the fix.
 */
export async function ensureEngine(ctx: Context, waitMs = 20_000): Promise<void> {
  const info = () => ctx.docker.run(["info", "--format", "{{.ServerVersion}}"]);
  let r = await info();
  if (r.code === 0) return;
  if (r.code === 127) {
    throw dockerError(
      "preflight",
      "Cannot reach Docker: the docker CLI is not installed",
      "As root: apt-get install -y docker.io docker-compose",
    );
  }
  if (Deno.uid() !== 0) {
    throw dockerError(
      "preflight",
      "Cannot reach the Docker engine: `docker info` failed",
      "Start it (sudo systemctl start docker, or as root: setsid dockerd --bridge=none " +
        "--iptables=false --ip-masq=false --ip-forward=false &) or add your user to the docker group.",
      tail(r.stderr, 3),
    );
  }
  const dockerd = await runCommand("sh", ["-c", "command -v dockerd"]);
  if (dockerd.code !== 0) {
    throw dockerError(
      "preflight",
      "Cannot start the Docker engine: dockerd is not installed",
      "apt-get install -y docker.io docker-compose",
    );
  }
  const log = join(await Deno.makeTempDir({ prefix: "cortex-demo-dockerd-" }), "dockerd.log");
  ctx.log.info(`Starting the Docker engine (loopback only); its log: ${log}`);
  const start = await runCommand("sh", [
    "-c",
    `setsid dockerd --bridge=none --iptables=false --ip-masq=false --ip-forward=false ` +
    `>"$1" 2>&1 </dev/null &`,
    "sh",
    log,
  ]);
  if (start.code !== 0) {
    throw dockerError("preflight", "Cannot start dockerd", undefined, tail(start.stderr));
  }
  const deadline = ctx.now().getTime() + waitMs;
  while (ctx.now().getTime() < deadline) {
    await ctx.sleep(500, ctx.signal);
    r = await info();
    if (r.code === 0) return;
  }
  const logText = await Deno.readTextFile(log).catch(() => "");
  throw dockerError(
    "preflight",
    `Cannot start the Docker engine: no answer after ${Math.round(waitMs / 1000)} s`,
    `See ${log}`,
    tail(logText, 10),
  );
}

/** Where the demo puts things inside `dir`. */
export function demoPaths(dir: string): DemoPaths {
  return {
    bundleDir: join(dir, DEFAULT_BUNDLE_DIR),
    cortexDir: join(dir, DEFAULT_CORTEX_DIR),
    modelsDir: join(dir, "models"),
    hfCacheDir: join(dir, "hf-cache"),
    stateDir: join(dir, "state"),
    manifestPath: join(dir, "release.json"),
  };
}

/** Whether `bundleDir` holds a complete package: manifest, checksums and every listed file. */
async function bundleComplete(bundleDir: string): Promise<boolean> {
  if (!await exists(join(bundleDir, BUNDLE_MANIFEST))) return false;
  let sums: string;
  try {
    sums = await Deno.readTextFile(join(bundleDir, CHECKSUMS_FILE));
  } catch {
    return false;
  }
  const paths = sums.split("\n").filter(Boolean).map((l) => l.replace(/^[0-9a-f]{64} [ *]/, ""));
  if (paths.length < DEMO_IMAGES.length) return false;
  for (const p of paths) if (!await exists(join(bundleDir, p))) return false;
  return true;
}

export interface BuildDemoOptions {
  /** Image namespace; default `cortex-demo` (tests use their own). */
  namespace?: string;
  /** Rebuild the bundle even when a complete one is there. */
  force?: boolean;
}

/**
 * Builds the demo in `dir` (if missing): the script-format bundle, the Cortex dir, the release
 * manifest and empty models/hf-cache/state dirs. Images are busybox stand-ins made with
 * `docker import`, written with `docker save`, then removed again so that the install really
 * loads them; an image that was already in the engine is saved as it is and left alone.
 */
export async function buildDemo(
  ctx: Context,
  dir: string,
  opts: BuildDemoOptions = {},
): Promise<DemoResult> {
  const ns = opts.namespace ?? DEMO_NAMESPACE;
  const paths = demoPaths(dir);
  const refs = DEMO_IMAGES.map((i) => demoRef(i, ns));
  await Deno.mkdir(dir, { recursive: true });
  for (const d of [paths.modelsDir, paths.hfCacheDir, paths.stateDir]) {
    await Deno.mkdir(d, { recursive: true });
  }
  await copyCortexDir(paths.cortexDir);
  if (!await exists(paths.manifestPath)) {
    await Deno.writeFile(paths.manifestPath, await Deno.readFile(new URL("release.json", ASSETS)));
  }
  let built = false;
  if (opts.force || !await bundleComplete(paths.bundleDir)) {
    await buildBundle(ctx, paths.bundleDir, ns);
    built = true;
  } else {
    ctx.log.info(`Using the demo bundle already in "${paths.bundleDir}"`);
  }
  return { ...paths, built, images: refs };
}

async function copyCortexDir(cortexDir: string): Promise<void> {
  // Copied only when missing: the install edits these files and a re-run must keep its edits.
  for (const f of CORTEX_FILES) {
    const dst = join(cortexDir, f);
    if (await exists(dst)) continue;
    await Deno.mkdir(join(dst, ".."), { recursive: true });
    await Deno.writeFile(dst, await Deno.readFile(new URL(f, ASSETS)));
  }
}

async function buildBundle(ctx: Context, bundleDir: string, ns: string): Promise<void> {
  if (!await exists(BUSYBOX)) {
    throw preflightError(
      "preflight",
      `Cannot build the demo images: "${BUSYBOX}" is missing`,
      "apt-get install busybox-static",
    );
  }
  const staging = `${bundleDir}.building-${crypto.randomUUID().slice(0, 8)}`;
  await Deno.mkdir(staging, { recursive: true });
  const refs = DEMO_IMAGES.map((i) => demoRef(i, ns));
  const before = await inspectImages(ctx.docker, refs);
  const imported: string[] = [];
  const root = await Deno.makeTempDir({ prefix: "cortex-demo-rootfs-" });
  try {
    await makeRootfs(root);
    ctx.log.info(`Building the demo bundle in "${bundleDir}"`);
    for (const img of DEMO_IMAGES) {
      throwIfAborted(ctx.signal);
      const ref = demoRef(img, ns);
      if (!before.has(ref)) {
        await importImage(ctx, root, ref, img);
        imported.push(ref);
      } else {
        ctx.log.debug(`demo: "${ref}" is already in the engine; saving it as it is`);
      }
      const out = join(staging, img.file);
      const r = await ctx.docker.run(["save", "-o", out, ref]);
      if (r.code !== 0) {
        throw dockerError("bundle", `Cannot save demo image "${ref}"`, undefined, tail(r.stderr));
      }
    }
    const model = join(staging, MODELS_DIR, DEMO_MODEL);
    await Deno.mkdir(model, { recursive: true });
    for (const [name, make] of Object.entries(MODEL_FILES)) {
      await Deno.writeFile(join(model, name), make());
    }
    const listed = [
      ...DEMO_IMAGES.map((i) => i.file),
      ...Object.keys(MODEL_FILES).map((f) => `${MODELS_DIR}/${DEMO_MODEL}/${f}`),
    ];
    const entries = [];
    for (const path of listed) {
      entries.push({ path, sha256: (await hashFile(join(staging, path))).sha256 });
    }
    await Deno.writeTextFile(join(staging, CHECKSUMS_FILE), renderChecksums(entries));
    await Deno.writeTextFile(
      join(staging, BUNDLE_MANIFEST),
      JSON.stringify(demoScriptManifest(ctx.now(), ns), null, 2) + "\n",
    );
    await Deno.writeTextFile(
      join(staging, "README.txt"),
      "Cortex offline package: cortex-install DEMO (busybox stand-ins, not real Cortex images).\n" +
        "Install: cortex-install install --bundle <this folder>\n",
    );
    await Deno.remove(bundleDir, { recursive: true }).catch(() => {});
    await Deno.rename(staging, bundleDir);
  } finally {
    await Deno.remove(root, { recursive: true }).catch(() => {});
    await Deno.remove(staging, { recursive: true }).catch(() => {});
    // Only what this build imported: an image that was there before stays.
    const failed = await removeImages(ctx.docker, imported);
    if (failed.length > 0) ctx.log.warn(`Could not remove demo images: ${failed.join(", ")}`);
  }
}

/** A busybox root filesystem for the demo stand-ins (`/bin/busybox` and its applets). */
export async function makeRootfs(root: string): Promise<void> {
  await Deno.mkdir(join(root, "bin"));
  await Deno.mkdir(join(root, "etc"));
  await Deno.mkdir(join(root, "tmp"), { mode: 0o1777 });
  await Deno.chmod(join(root, "tmp"), 0o1777);
  await Deno.copyFile(BUSYBOX, join(root, "bin/busybox"));
  await Deno.chmod(join(root, "bin/busybox"), 0o755);
  for (const a of APPLETS) await Deno.symlink("busybox", join(root, "bin", a));
}

/** `docker import` of the demo root filesystem as `ref` (a unique file per image: its own ID). */
export async function importImage(
  ctx: Context,
  root: string,
  ref: string,
  img: Pick<DemoImage, "purpose">,
): Promise<void> {
  // A unique file per image, so that image IDs differ.
  await Deno.writeTextFile(join(root, "etc/cortex-demo-image"), `${ref}\n${img.purpose}\n`);
  const tar = new Deno.Command("tar", {
    args: ["-C", root, "--owner=0", "--group=0", "-c", "."],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const r = await ctx.docker.run(
    [
      "import",
      "--change",
      "LABEL cortex-demo=1",
      "--change",
      `LABEL org.opencontainers.image.title=${ref}`,
      "--change",
      'CMD ["sh"]',
      "-",
      ref,
    ],
    { stdin: tar.stdout },
  );
  const t = await tar.status;
  if (r.code !== 0 || t.code !== 0) {
    throw dockerError(
      "bundle",
      `Cannot build demo image "${ref}": docker import failed`,
      undefined,
      tail(r.stderr || `tar exited with ${t.code}`),
    );
  }
}
