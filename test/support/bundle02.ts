/**
 * Builds Cortex 0.2 bundles in the exact layout Cortex writes (cortex-0.2-facts §1), for unit
 * tests (fake tars from tarbuild.ts) and journeys (real `docker save` tars of tiny busybox images,
 * each labelled `cit=<label>` so a test removes only its own images):
 *
 * ```
 * bundle.json images.json checksums.sha256 README.txt
 * images/<sanitized ref>.tar                 one `docker save` per image
 * models/<served>/manifest.json + files/<path>   Admin UI only
 * db/cortex.sql                              Admin UI, optional
 * wheels/ (*.whl, requirements.txt), versions.env   script only
 * ```
 *
 * checksums.sha256 is in Cortex's order: the script lists the tars (images.json order), then
 * images.json; the Admin UI lists, sorted, the tars, the model files, db/cortex.sql, then
 * images.json. bundle.json, manifests, README.txt, versions.env and wheels/ are never listed.
 * `corrupt` damages the result the ways the journeys need.
 */
import { createHash } from "node:crypto";
import { runDocker } from "../../src/docker.ts";
import {
  corrupt as damage,
  fileSha256,
  makeImage,
  randomLabel,
  removeTestImages,
} from "./fixtures.ts";
import { dockerSaveTar } from "./tarbuild.ts";

export type Variant02 = "script" | "admin-ui";

/** One image of the bundle. */
export interface Image02 {
  ref: string;
  /** images.json role: engine, program, deps, infra. */
  role: string;
  /** `ENV` lines of the image config, e.g. `NVIDIA_REQUIRE_CUDA=cuda>=13.0`. */
  env?: string[];
  /** Save the tar under this name instead of `ref` (its RepoTags then differ from `ref`). */
  savedAs?: string;
}

/** One exported model (Admin UI): files under `<top>/`, placed at `<models dir>/<top>/...`. */
export interface Model02 {
  served: string;
  /** The model's top folder (manifest `local_path`). */
  top: string;
  /** Path under `top` -> content. */
  files: Record<string, string | Uint8Array>;
  engineImage?: string;
}

/** Ways to damage a built bundle. */
export interface Corruption02 {
  /** Flip one byte in the first file of this served model (listed in its manifest). */
  flipModelByte?: string;
  /** Delete the tar of this ref from images/. */
  dropTar?: string;
  /** Write this `kind` into bundle.json. */
  kind?: string;
  /**
   * `tampered`: an images.json entry's sha256 changed after checksums.sha256 was written (so
   * images.json no longer matches its own line); `disagree`: the same, with checksums.sha256's
   * images.json line rewritten to match (images.json and checksums.sha256 disagree on the tar).
   */
  imagesJson?: "tampered" | "disagree";
  /** Add this model file path (relative to the models dir) to the first model's manifest. */
  unsafeModelPath?: string;
}

export interface Bundle02Options {
  variant: Variant02;
  /** bundle.json `cortex_version` (default "0.2.0"; the Admin UI may write "dev"). */
  cortexVersion?: string;
  images?: Image02[];
  models?: Model02[];
  /** db/cortex.sql (Admin UI; default none). */
  dbDump?: string;
  /** Script: wheels/ files (default one wheel and requirements.txt). */
  wheels?: Record<string, string>;
  /** Script: versions.env text (default Cortex's own). */
  versionsEnv?: string;
  corrupt?: Corruption02;
  /** Where to write (default a new temp dir). */
  dir?: string;
  label?: string;
  /** Keep the images in the engine after saving (default false: removed, as on a fresh host). */
  keepImages?: boolean;
}

/** A tar already in `<dir>/images/`, as the assembler needs it. */
export interface SavedTar {
  ref: string;
  role: string;
  /** Bundle-relative: `images/<sanitized ref>.tar`. */
  file: string;
  imageId: string;
  sizeBytes: number;
  digests: string[];
}

export interface Built02 {
  dir: string;
  label: string;
  prefix: string;
  variant: Variant02;
  images: (SavedTar & { sha256: string; tarBytes: number; savedAs?: string })[];
  /** Bundle-relative path -> sha256 of every file written (before any corruption). */
  digests: Record<string, string>;
  /** Model files by bundle-relative path, e.g. `models/tiny/files/tiny-model/config.json`. */
  modelFiles: string[];
  cleanup(): Promise<void>;
}

/** Cortex's tar name: `/` -> `_`, `:` -> `__`, `@` -> `_at_`. */
export function tarName02(ref: string): string {
  return `images/${ref.replaceAll("/", "_").replaceAll(":", "__").replaceAll("@", "_at_")}.tar`;
}

const hex = (d: Uint8Array | string) => createHash("sha256").update(d).digest("hex");
const enc = new TextEncoder();

/** Cortex's own versions.env of 0.2.0 (abridged: plain KEY=value). */
export const VERSIONS_ENV_02 = "CORTEX_VERSION=0.2.0\nVLLM_IMAGE=vllm/vllm-openai:v0.28.0\n" +
  "LLAMACPP_IMAGE=ghcr.io/ggml-org/llama.cpp:server-cuda-b10731\nPOSTGRES_IMAGE=postgres:16\n";

/** The default images of a test bundle, under `prefix/`. */
export function defaultImages02(prefix: string): Image02[] {
  return [
    {
      ref: `${prefix}/vllm-openai:v0.28.0`,
      role: "engine",
      env: ["NVIDIA_REQUIRE_CUDA=cuda>=13.0"],
    },
    { ref: `${prefix}/cortex-gateway:0.2.0`, role: "program" },
    { ref: `${prefix}/postgres:16`, role: "infra" },
  ];
}

/** The default model of an Admin-UI bundle. */
export const DEFAULT_MODEL: Model02 = {
  served: "tiny-chat",
  top: "Tiny-Chat-1B",
  files: { "config.json": '{"model_type":"llama"}\n', "model.safetensors": "weights-0123456789" },
};

/**
 * Writes everything of a 0.2 bundle around tars already saved in `<dir>/images/`: models,
 * db/cortex.sql, wheels/, versions.env, bundle.json, images.json (key order as each writer
 * has it), checksums.sha256 in Cortex's order, README.txt; then applies `corrupt`. Returns
 * the digests of every file written (before corruption).
 */
export async function assemble02(
  dir: string,
  opts: Bundle02Options,
  tars: SavedTar[],
): Promise<Omit<Built02, "label" | "prefix" | "cleanup">> {
  const script = opts.variant === "script";
  const digests: Record<string, string> = {};
  const write = async (rel: string, data: string | Uint8Array) => {
    const p = `${dir}/${rel}`;
    await Deno.mkdir(p.slice(0, p.lastIndexOf("/")), { recursive: true });
    const bytes = typeof data === "string" ? enc.encode(data) : data;
    await Deno.writeFile(p, bytes);
    digests[rel] = hex(bytes);
  };
  const images: Built02["images"] = [];
  for (const t of tars) {
    const sha256 = await fileSha256(`${dir}/${t.file}`);
    digests[t.file] = sha256;
    images.push({ ...t, sha256, tarBytes: (await Deno.stat(`${dir}/${t.file}`)).size });
  }

  // Models (Admin UI only): manifest + files/<path>, path = <top>/<file>.
  const models = script ? [] : opts.models ?? [];
  const modelFiles: string[] = [];
  const manifests: { served: string; text: string }[] = [];
  for (const m of models) {
    const files = [];
    for (const [rel, content] of Object.entries(m.files)) {
      const path = `${m.top}/${rel}`;
      const src = `models/${m.served}/files/${path}`;
      await write(src, content);
      modelFiles.push(src);
      const bytes = typeof content === "string" ? enc.encode(content) : content;
      files.push({ path, bytes: bytes.length, sha256: hex(bytes) });
    }
    const manifest = {
      schema_version: 1,
      type: "cortex_model_export",
      exported_at: "2026-09-10T08:14:40Z",
      source_model_id: 3,
      name: m.served,
      served_model_name: m.served,
      task: "generate",
      engine_type: "vllm",
      engine_image: m.engineImage ?? images.find((i) => i.role === "engine")?.ref ?? null,
      mode: "offline",
      repo_id: null,
      local_path: m.top,
      config: { selected_gpus: [0], dtype: "auto", max_model_len: 32768 },
      files,
      files_included: true,
    };
    manifests.push({ served: m.served, text: JSON.stringify(manifest, null, 2) });
  }
  for (const m of manifests) await write(`models/${m.served}/manifest.json`, m.text);
  if (!script && opts.dbDump !== undefined) await write("db/cortex.sql", opts.dbDump);
  if (script) {
    const wheels = opts.wheels ??
      {
        "wheels/fastapi-0.115.0-py3-none-any.whl": "PK-wheel",
        "wheels/requirements.txt": "fastapi\n",
      };
    for (const [p, c] of Object.entries(wheels)) await write(p, c);
    await write("versions.env", opts.versionsEnv ?? VERSIONS_ENV_02);
  }

  // images.json: the script and the UI write the keys in different orders.
  const entries = images.map((i) =>
    script
      ? {
        ref: i.ref,
        id: i.imageId,
        size_bytes: i.sizeBytes,
        tar_bytes: i.tarBytes,
        sha256: i.sha256,
        digests: i.digests,
        role: i.role,
        file: i.file,
      }
      : {
        file: i.file,
        ref: i.ref,
        role: i.role,
        id: i.imageId,
        sha256: i.sha256,
        size_bytes: i.sizeBytes,
        tar_bytes: i.tarBytes,
        digests: i.digests,
      }
  );
  await write("images.json", JSON.stringify(entries, null, 2));
  const version = opts.cortexVersion ?? "0.2.0";
  const sizeBytes = images.reduce((s, i) => s + i.tarBytes, 0);
  const bundleJson = script
    ? {
      schema_version: 1,
      kind: "cortex-bundle",
      created_at: "2026-09-10T08:15:02Z",
      cortex_version: version,
      source_host: "build-01",
      notes: "program bundle (scripts/prepare-offline-deployment.sh)",
      contents: { images: entries, models: [], wheels: true },
      size_bytes: sizeBytes,
    }
    : {
      kind: "cortex-bundle",
      schema_version: 1,
      cortex_version: version,
      created_at: "2026-09-10T08:15:02Z",
      source_host: "gpu-lab-01",
      notes: "",
      engine_defaults: {
        vllm: "vllm/vllm-openai:v0.28.0",
        llamacpp: "ghcr.io/ggml-org/llama.cpp:server-cuda-b10731",
      },
      contents: {
        images: entries,
        models: models.map((m) => ({
          served_model_name: m.served,
          name: m.served,
          engine_type: "vllm",
          files_included: true,
        })),
        program: images.some((i) => i.role === "program" || i.role === "deps"),
        db_dump: opts.dbDump !== undefined,
      },
      size_bytes: sizeBytes,
    };
  await write("bundle.json", JSON.stringify(bundleJson, null, 2));

  // checksums.sha256 in Cortex's order.
  const listed = script ? [...images.map((i) => i.file), "images.json"] : [
    ...images.map((i) => i.file).sort(),
    ...[...modelFiles].sort(),
    ...(opts.dbDump !== undefined ? ["db/cortex.sql"] : []),
    "images.json",
  ];
  const lines = listed.map((p) => `${digests[p]}  ${p}\n`).join("");
  await Deno.writeTextFile(`${dir}/checksums.sha256`, lines);
  digests["checksums.sha256"] = hex(lines);
  await write("README.txt", "Cortex offline bundle (test fixture)\n");

  if (opts.corrupt) await corrupt02(dir, opts.corrupt);
  return { dir, variant: opts.variant, images, digests, modelFiles };
}

/**
 * Damages a written 0.2 bundle in place (reads what it needs from the folder, so it works on a
 * copy of a built bundle). Throws when the bundle has nothing to damage that way.
 */
export async function corrupt02(dir: string, c: Corruption02): Promise<void> {
  const readJson = async (rel: string) => JSON.parse(await Deno.readTextFile(`${dir}/${rel}`));
  if (c.flipModelByte) {
    const m = await readJson(`models/${c.flipModelByte}/manifest.json`);
    const f = `models/${c.flipModelByte}/files/${m.files[0].path}`;
    await damage(`${dir}/${f}`, { flipByteAt: 0 });
  }
  if (c.dropTar) {
    const entries = await readJson("images.json") as { ref: string; file: string }[];
    const img = entries.find((i) => i.ref === c.dropTar);
    if (!img) throw new Error(`no image "${c.dropTar}" to drop`);
    await Deno.remove(`${dir}/${img.file}`);
  }
  if (c.kind !== undefined) {
    const j = await readJson("bundle.json");
    j.kind = c.kind;
    await Deno.writeTextFile(`${dir}/bundle.json`, JSON.stringify(j, null, 2));
  }
  if (c.imagesJson) {
    const j = await readJson("images.json") as { sha256: string }[];
    j[0].sha256 = "0".repeat(64);
    const text = JSON.stringify(j, null, 2);
    await Deno.writeTextFile(`${dir}/images.json`, text);
    if (c.imagesJson === "disagree") {
      const cp = `${dir}/checksums.sha256`;
      const sums = (await Deno.readTextFile(cp)).replace(
        /^[0-9a-f]{64}( {2}images\.json)$/m,
        `${hex(text)}$1`,
      );
      await Deno.writeTextFile(cp, sums);
    }
  }
  if (c.unsafeModelPath !== undefined) {
    const served = [...Deno.readDirSync(`${dir}/models`)].map((e) => e.name).sort()[0];
    if (!served) throw new Error("no model to make unsafe");
    const rel = `models/${served}/manifest.json`;
    const j = await readJson(rel);
    j.files.push({ path: c.unsafeModelPath, bytes: 1, sha256: "0".repeat(64) });
    await Deno.writeTextFile(`${dir}/${rel}`, JSON.stringify(j, null, 2));
  }
}

/**
 * Builds a 0.2 bundle of real images: each a busybox rootfs imported with `LABEL cit=<label>`,
 * saved with `docker save` into `images/<sanitized ref>.tar` (under `savedAs` when given), then
 * assembled as Cortex writes it. The images are removed from the engine unless `keepImages`.
 * Always call `cleanup()`.
 */
export async function buildBundle02(opts: Bundle02Options): Promise<Built02> {
  const label = opts.label ?? randomLabel("v");
  const prefix = `cit-${label}`;
  const dir = opts.dir ?? await Deno.makeTempDir({ prefix: `cit-bundle02-${opts.variant}-` });
  const cleanup = async () => {
    await removeTestImages(label);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  try {
    await Deno.mkdir(`${dir}/images`, { recursive: true });
    const specs = opts.images ?? defaultImages02(prefix);
    const tars: SavedTar[] = [];
    const saved: Record<string, string> = {};
    for (const spec of specs) {
      const name = spec.savedAs ?? spec.ref;
      const imageId = await makeImage(name, label, { env: spec.env });
      const file = tarName02(spec.ref);
      const r = await runDocker(["save", "-o", `${dir}/${file}`, name]);
      if (r.code !== 0) throw new Error(`docker save ${name}: ${r.stderr}`);
      const size = await runDocker(["image", "inspect", "--format", "{{.Size}}", imageId]);
      tars.push({
        ref: spec.ref,
        role: spec.role,
        file,
        imageId,
        sizeBytes: Number(size.stdout.trim()) || 0,
        digests: [],
      });
      if (spec.savedAs) saved[spec.ref] = spec.savedAs;
    }
    if (!opts.keepImages) { for (const t of tars) await runDocker(["rmi", "-f", t.imageId]); }
    const out = await assemble02(dir, opts, tars);
    return {
      ...out,
      images: out.images.map((i) => ({ ...i, ...(saved[i.ref] ? { savedAs: saved[i.ref] } : {}) })),
      label,
      prefix,
      cleanup,
    };
  } catch (e) {
    await cleanup();
    throw e;
  }
}

/**
 * A 0.2 bundle for unit tests, without an engine: each tar is a small synthesized `docker save`
 * (tarbuild.ts) whose RepoTags are `savedAs ?? ref` and whose config carries `env`. Call
 * `cleanup()` to remove the folder.
 */
export async function fakeBundle02(opts: Bundle02Options): Promise<Built02> {
  const label = opts.label ?? randomLabel("f");
  const prefix = `cit-${label}`;
  const dir = opts.dir ?? await Deno.makeTempDir({ prefix: `cit-fake02-${opts.variant}-` });
  await Deno.mkdir(`${dir}/images`, { recursive: true });
  const tars: SavedTar[] = [];
  for (const spec of opts.images ?? defaultImages02(prefix)) {
    const save = dockerSaveTar([{
      repoTags: [spec.savedAs ?? spec.ref],
      layers: [`layer of ${spec.ref}`],
      env: ["PATH=/usr/bin", ...(spec.env ?? [])],
    }], "legacy");
    const file = tarName02(spec.ref);
    await Deno.writeFile(`${dir}/${file}`, save.tar);
    tars.push({
      ref: spec.ref,
      role: spec.role,
      file,
      imageId: save.images[0].imageId,
      sizeBytes: 4096,
      digests: [],
    });
  }
  const out = await assemble02(dir, opts, tars);
  return {
    ...out,
    label,
    prefix,
    cleanup: () => Deno.remove(dir, { recursive: true }).catch(() => {}),
  };
}

/** Copies a built bundle's folder (so one build serves several damaged copies). */
export async function copyBundle(src: string): Promise<string> {
  const dst = await Deno.makeTempDir({ prefix: "cit-bundle02-copy-" });
  const r = await new Deno.Command("cp", { args: ["-a", `${src}/.`, dst] }).output();
  if (!r.success) throw new Error(`cp -a ${src} failed`);
  return dst;
}
