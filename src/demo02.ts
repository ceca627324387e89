/**
 * The Cortex 0.2 demo: an Admin-UI-shaped 0.2 bundle (`bundle.json`, `images.json`,
 * `images/<ref with / -> _, : -> __>.tar`, `models/<served>/manifest.json` + `files/`,
 * `checksums.sha256` in Cortex's order) of busybox stand-ins under the `cortex-demo-02/`
 * namespace, a Cortex 0.2 demo checkout (assets/demo02: a 0.2-shaped prod compose with its `:?`
 * keys and no env_file, `.env.example`, `versions.env`), the 0.2 release policy with its images
 * moved to that namespace, and a generated first-admin password file (mode 0600). The demo
 * command then runs the real `install` on it (root .env, secrets generated, Compose v2).
 */
import { join } from "node:path";
import type { Context } from "./context.ts";
import { inspectImages, removeImages, tail } from "./docker.ts";
import { dockerError, preflightError, throwIfAborted } from "./errors.ts";
import { hashFile, sha256Hex } from "./hash.ts";
import { EMBEDDED_MANIFEST_URL } from "./bundle/release.ts";
import { bundleTarName } from "./bundle/bundle02.ts";
import {
  BUNDLE_JSON,
  CHECKSUMS_FILE,
  COMPOSE_PROD,
  DEFAULT_CORTEX_DIR,
  IMAGES_JSON,
  MODEL_FILES_DIR,
  MODEL_MANIFEST,
  MODELS_DIR,
  VERSIONS_ENV,
} from "./layout.ts";
import { exists } from "./fsutil.ts";
import { BUSYBOX, DEMO_MODEL, importImage, makeRootfs, MODEL_FILES } from "./demo.ts";
import { generateSecret } from "./host/secrets.ts";

export const DEMO02_NAMESPACE = "cortex-demo-02";
/** The demo Admin-UI export's folder name (Cortex's `cortex-bundle-*` pattern). */
export const DEMO02_BUNDLE = "cortex-bundle-demo";
/** The demo model's top folder under the models dir. */
export const DEMO02_MODEL_TOP = "Tiny-Demo-1B";
/** The demo gateway's port (Cortex's uses the host network on 8084; the demo keeps clear). */
export const DEMO02_GATEWAY_PORT = 18084;

/** One 0.2 demo image: its ref without the namespace, and its images.json role. */
export interface Demo02Image {
  ref: string;
  role: "engine" | "program" | "infra";
  purpose: string;
}

export const DEMO02_IMAGES: Demo02Image[] = [
  { ref: "vllm-openai:v0.28.0", role: "engine", purpose: "vLLM engine (demo stand-in)" },
  { ref: "cortex-gateway:0.2.0", role: "program", purpose: "Cortex gateway (demo stand-in)" },
  { ref: "cortex-frontend:0.2.0", role: "program", purpose: "Cortex UI (demo stand-in)" },
  { ref: "postgres:16", role: "infra", purpose: "Database (demo stand-in)" },
  { ref: "redis:7", role: "infra", purpose: "Cache (demo stand-in)" },
  { ref: "prometheus:v2.55.1", role: "infra", purpose: "Metrics (demo stand-in)" },
];

export const demo02Ref = (img: Demo02Image, ns = DEMO02_NAMESPACE) => `${ns}/${img.ref}`;

/** Where `buildDemo02` puts things inside its folder. */
export interface Demo02Paths {
  bundleDir: string;
  cortexDir: string;
  modelsDir: string;
  hfCacheDir: string;
  stateDir: string;
  /** The demo release policy (`--manifest`). */
  manifestPath: string;
  /** The first admin's password, generated (mode 0600). */
  passwordFile: string;
}

export function demo02Paths(dir: string): Demo02Paths {
  return {
    bundleDir: join(dir, DEMO02_BUNDLE),
    cortexDir: join(dir, DEFAULT_CORTEX_DIR),
    modelsDir: join(dir, "models"),
    hfCacheDir: join(dir, "hf-cache"),
    stateDir: join(dir, "state"),
    manifestPath: join(dir, "release.json"),
    passwordFile: join(dir, "admin-password"),
  };
}

const ASSETS = new URL("../assets/demo02/", import.meta.url);
const CORTEX_FILES = [COMPOSE_PROD, ".env.example", VERSIONS_ENV];

/**
 * The embedded 0.2 policy with its images under `ns/` and the gateway's readiness on the demo's
 * port: what `--manifest` gets (schema 2, one line).
 */
export async function demo02Policy(ns = DEMO02_NAMESPACE): Promise<string> {
  const set = JSON.parse(await Deno.readTextFile(EMBEDDED_MANIFEST_URL));
  const line = set.lines.find((l: { line: string }) => l.line === "0.2");
  for (const img of line.images) {
    img.repository = `${ns}/${String(img.repository).split("/").pop()}`;
  }
  for (const r of line.readiness) {
    if (r.service === "gateway") r.url = `http://127.0.0.1:${DEMO02_GATEWAY_PORT}/health`;
  }
  return JSON.stringify({ schema: 2, lines: [line] }, null, 2) + "\n";
}

export interface BuildDemo02Options {
  namespace?: string;
  force?: boolean;
}

/**
 * Builds the 0.2 demo in `dir` (what is complete is kept): the bundle, the Cortex checkout (only
 * files that are missing: the install edits the root .env and a re-run keeps its edits), the
 * policy, the password file and the target folders. Images are busybox stand-ins made with
 * `docker import`, saved with `docker save`, then removed again so the install loads them; an
 * image already in the engine is saved as it is and left alone.
 */
export async function buildDemo02(
  ctx: Context,
  dir: string,
  opts: BuildDemo02Options = {},
): Promise<Demo02Paths & { built: boolean }> {
  const ns = opts.namespace ?? DEMO02_NAMESPACE;
  const paths = demo02Paths(dir);
  for (const d of [dir, paths.modelsDir, paths.hfCacheDir, paths.stateDir]) {
    await Deno.mkdir(d, { recursive: true });
  }
  for (const f of CORTEX_FILES) {
    const dst = join(paths.cortexDir, f);
    if (await exists(dst)) continue;
    await Deno.mkdir(join(dst, ".."), { recursive: true });
    const text = await Deno.readTextFile(new URL(f, ASSETS));
    await Deno.writeTextFile(dst, text.replaceAll(`${DEMO02_NAMESPACE}/`, `${ns}/`));
  }
  await Deno.mkdir(join(paths.cortexDir, "backend"), { recursive: true });
  await Deno.writeTextFile(paths.manifestPath, await demo02Policy(ns));
  if (!await exists(paths.passwordFile)) {
    await Deno.writeTextFile(paths.passwordFile, `${generateSecret(12)}\n`, { mode: 0o600 });
  }
  let built = false;
  if (opts.force || !await exists(join(paths.bundleDir, CHECKSUMS_FILE))) {
    await buildBundle02(ctx, paths.bundleDir, ns);
    built = true;
  } else {
    ctx.log.info(`Using the demo bundle already in "${paths.bundleDir}"`);
  }
  return { ...paths, built };
}

async function buildBundle02(ctx: Context, bundleDir: string, ns: string): Promise<void> {
  if (!await exists(BUSYBOX)) {
    throw preflightError(
      "preflight",
      `Cannot build the demo images: "${BUSYBOX}" is missing`,
      "apt-get install busybox-static",
    );
  }
  const staging = `${bundleDir}.building-${crypto.randomUUID().slice(0, 8)}`;
  await Deno.mkdir(join(staging, "images"), { recursive: true });
  const refs = DEMO02_IMAGES.map((i) => demo02Ref(i, ns));
  const before = await inspectImages(ctx.docker, refs);
  const imported: string[] = [];
  const root = await Deno.makeTempDir({ prefix: "cortex-demo-rootfs-" });
  try {
    await makeRootfs(root);
    ctx.log.info(`Building the Cortex 0.2 demo bundle in "${bundleDir}"`);
    const entries: Record<string, unknown>[] = [];
    const sums: { path: string; sha256: string }[] = [];
    for (const img of DEMO02_IMAGES) {
      throwIfAborted(ctx.signal);
      const ref = demo02Ref(img, ns);
      if (!before.has(ref)) {
        await importImage(ctx, root, ref, img);
        imported.push(ref);
      }
      const file = `images/${bundleTarName(ref)}`;
      const r = await ctx.docker.run(["save", "-o", join(staging, file), ref]);
      if (r.code !== 0) {
        throw dockerError("bundle", `Cannot save demo image "${ref}"`, undefined, tail(r.stderr));
      }
      const info = (await inspectImages(ctx.docker, [ref])).get(ref)!;
      const h = await hashFile(join(staging, file));
      sums.push({ path: file, sha256: h.sha256 });
      // The Admin UI's key order (cortex-0.2-facts §1).
      entries.push({
        file,
        ref,
        role: img.role,
        id: info.id,
        sha256: h.sha256,
        size_bytes: info.size,
        tar_bytes: h.size,
        digests: [],
      });
    }
    // The model: manifest.json (path relative to the models dir, `bytes`) and files/<path>.
    const files = [];
    for (const [name, make] of Object.entries(MODEL_FILES)) {
      const bytes = make();
      const path = `${DEMO02_MODEL_TOP}/${name}`;
      const src = `${MODELS_DIR}/${DEMO_MODEL}/${MODEL_FILES_DIR}/${path}`;
      await Deno.mkdir(join(staging, src, ".."), { recursive: true });
      await Deno.writeFile(join(staging, src), bytes);
      const sha256 = sha256Hex(bytes);
      files.push({ path, bytes: bytes.length, sha256 });
      sums.push({ path: src, sha256 });
    }
    const engine = demo02Ref(DEMO02_IMAGES[0], ns);
    await Deno.writeTextFile(
      join(staging, MODELS_DIR, DEMO_MODEL, MODEL_MANIFEST),
      JSON.stringify(
        {
          schema_version: 1,
          type: "cortex_model_export",
          exported_at: ctx.now().toISOString().replace(/\.\d{3}Z$/, "Z"),
          source_model_id: 1,
          name: "Tiny demo model",
          served_model_name: DEMO_MODEL,
          task: "generate",
          engine_type: "vllm",
          engine_image: engine,
          mode: "offline",
          repo_id: null,
          local_path: DEMO02_MODEL_TOP,
          config: { dtype: "auto", max_model_len: 128 },
          files,
          files_included: true,
        },
        null,
        2,
      ),
    );
    const imagesJson = JSON.stringify(entries, null, 2);
    await Deno.writeTextFile(join(staging, IMAGES_JSON), imagesJson);
    await Deno.writeTextFile(
      join(staging, BUNDLE_JSON),
      JSON.stringify(
        {
          kind: "cortex-bundle",
          schema_version: 1,
          cortex_version: "0.2.0",
          created_at: ctx.now().toISOString().replace(/\.\d{3}Z$/, "Z"),
          source_host: "cortex-install-demo",
          notes: "cortex-install DEMO (busybox stand-ins, not real Cortex images)",
          engine_defaults: { vllm: engine, llamacpp: null },
          contents: {
            images: entries,
            models: [{
              served_model_name: DEMO_MODEL,
              name: "Tiny demo model",
              engine_type: "vllm",
              engine_image: engine,
              files_included: true,
            }],
            program: true,
            db_dump: false,
          },
          size_bytes: entries.reduce((s, e) => s + Number(e.tar_bytes), 0),
        },
        null,
        2,
      ),
    );
    // The Admin UI's checksums: sorted; tars, model files, then images.json last.
    sums.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    sums.push({ path: IMAGES_JSON, sha256: sha256Hex(new TextEncoder().encode(imagesJson)) });
    await Deno.writeTextFile(
      join(staging, CHECKSUMS_FILE),
      sums.map((s) => `${s.sha256}  ${s.path}\n`).join(""),
    );
    await Deno.writeTextFile(
      join(staging, "README.txt"),
      "Cortex bundle: cortex-install DEMO (busybox stand-ins, not real Cortex images).\n" +
        "Install: cortex-install install --bundle <this folder>\n",
    );
    await Deno.remove(bundleDir, { recursive: true }).catch(() => {});
    await Deno.rename(staging, bundleDir);
  } finally {
    await Deno.remove(root, { recursive: true }).catch(() => {});
    await Deno.remove(staging, { recursive: true }).catch(() => {});
    const failed = await removeImages(ctx.docker, imported);
    if (failed.length > 0) ctx.log.warn(`Could not remove demo images: ${failed.join(", ")}`);
  }
}
