/**
 * Bundle builder for end-to-end tests and benches: real images made from busybox, `docker save`d
 * into the three bundle formats Cortex produces. Every image carries `LABEL cit=<label>` so a
 * test removes exactly its own images (`removeTestImages`), never anyone else's.
 *
 * ```ts
 * const b = await buildBundle({ format: "script" });
 * try {
 *   const r = await runCli(["verify", "--bundle", b.dir, "--json"]);
 * } finally {
 *   await b.cleanup();
 * }
 * ```
 */
import { createHash } from "node:crypto";
import { runCommand, runDocker } from "../../src/docker.ts";

/** The repository root (where main.ts is). */
export const REPO_ROOT = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");

export type FixtureFormat = "script" | "admin-ui" | "folder";

/** One image to build. A plain string is `{ ref }`. */
export interface ImageSpec {
  /** The tag saved into the tar (its RepoTags), e.g. `cit-ab12/postgres:16`. */
  ref: string;
  /** File name in the bundle; by default Cortex's naming for the format. */
  file?: string;
  /** Script format: list `name` without a tag (like dcgm-exporter); the tar keeps the tag. */
  untagged?: boolean;
  /** Script format: purpose says "(optional)". */
  optional?: boolean;
  /** Script format: put in `engines` (name + version); default: ref contains vllm or llama. */
  engine?: boolean;
  /** Add a random file of this many bytes (for benches). */
  sizeBytes?: number;
  /** `ENV` lines in the image config, e.g. `NVIDIA_REQUIRE_CUDA=cuda>=12.4`. */
  env?: string[];
  /** Tar layout: `legacy` (docker <= 24 save) or `oci` (docker 25+ save). */
  layout?: "legacy" | "oci";
  /** Save the tar with no RepoTags at all (`docker save <id>`). */
  noRepoTags?: boolean;
}

export interface BuildBundleOptions {
  /** Default "script". */
  format?: FixtureFormat;
  /**
   * Images to build. Default: a vLLM engine, postgres and an untagged dcgm-exporter, under the
   * unique prefix `cit-<label>/`.
   */
  images?: (string | ImageSpec)[];
  /** Default layout of every image (default "legacy"). */
  layout?: "legacy" | "oci";
  /** Model files by path under `models/` (e.g. `{"tiny/config.json": "{}"}`). */
  models?: Record<string, string | Uint8Array>;
  /** Write checksums.sha256 (default true). */
  checksums?: boolean;
  /** Write checksum lines in binary mode (`<hex> *<path>`). */
  binaryMode?: boolean;
  /** List model files in checksums.sha256 too (default true). */
  listModels?: boolean;
  /** The label value (default a random `b<8 hex>`); also used as the ref prefix `cit-<label>`. */
  label?: string;
  /** Where to write (default a new temp dir). */
  dir?: string;
  /** Keep the images in the engine after saving (default false: removed, as on a fresh host). */
  keepImages?: boolean;
  /** Admin-UI format: write db/cortex.sql and manifests/*.json (default true). */
  adminExtras?: boolean;
}

export interface BuiltImage {
  ref: string;
  /** Bundle-relative path of its tar. */
  file: string;
  /** `sha256:<hex>` */
  imageId: string;
  /** sha256 hex of the tar file. */
  sha256: string;
  size: number;
}

export interface BuiltBundle {
  dir: string;
  label: string;
  /** The ref prefix, `cit-<label>`. */
  prefix: string;
  images: BuiltImage[];
  /** Every file written, bundle-relative, with its sha256 (checksums or not). */
  digests: Record<string, string>;
  /** Removes the folder and every image labelled with `label`. */
  cleanup(): Promise<void>;
}

/** A random label like `b1f0c9a2e`. */
export function randomLabel(prefix = "b"): string {
  return prefix + crypto.randomUUID().replaceAll("-", "").slice(0, 8);
}

/** Default images: Cortex-like refs under `cit-<label>/`. */
export function defaultImages(prefix: string): ImageSpec[] {
  return [
    { ref: `${prefix}/vllm-openai:v0.6.3`, env: ["NVIDIA_REQUIRE_CUDA=cuda>=12.4"] },
    { ref: `${prefix}/postgres:16` },
    { ref: `${prefix}/dcgm-exporter:3.3.5-3.4.0-ubuntu22.04`, untagged: true, optional: true },
  ];
}

/** Cortex's script-package file name: `vllm-openai-v0.6.3.tar`, `postgres-16.tar`, `dcgm-exporter.tar`. */
export function scriptFileName(spec: ImageSpec): string {
  const { repo, tag } = splitTag(spec.ref);
  const base = repo.split("/").pop()!;
  return spec.untagged || !tag ? `${base}.tar` : `${base}-${tag}.tar`;
}

/** The Admin-UI name: `images/<ref with / -> _ and : -> __>.tar`. */
export function adminFileName(ref: string): string {
  return `images/${ref.replaceAll("/", "_").replaceAll(":", "__")}.tar`;
}

function splitTag(ref: string): { repo: string; tag?: string } {
  const slash = ref.lastIndexOf("/");
  const colon = ref.lastIndexOf(":");
  return colon > slash ? { repo: ref.slice(0, colon), tag: ref.slice(colon + 1) } : { repo: ref };
}

async function must(r: Promise<{ code: number; stdout: string; stderr: string }>, what: string) {
  const out = await r;
  if (out.code !== 0) throw new Error(`${what} failed (${out.code}): ${out.stderr || out.stdout}`);
  return out.stdout;
}

/** SHA-256 hex of a file (streamed). */
export async function fileSha256(path: string): Promise<string> {
  const h = createHash("sha256");
  using f = await Deno.open(path);
  const buf = new Uint8Array(4 << 20);
  while (true) {
    const n = await f.read(buf);
    if (n === null) break;
    h.update(buf.subarray(0, n));
  }
  return h.digest("hex");
}

/**
 * Makes one image from busybox with a unique file (so IDs differ), `LABEL cit=<label>`, the
 * given ENV lines and optionally a random payload of `sizeBytes`. Returns its image ID.
 */
export async function makeImage(
  ref: string,
  label: string,
  opts: { env?: string[]; sizeBytes?: number } = {},
): Promise<string> {
  const root = await Deno.makeTempDir({ prefix: "cit-rootfs-" });
  try {
    await Deno.mkdir(`${root}/bin`);
    await Deno.copyFile("/bin/busybox", `${root}/bin/busybox`);
    await Deno.chmod(`${root}/bin/busybox`, 0o755);
    for (const l of ["sh", "ls", "cat", "echo", "sleep", "wget", "httpd", "env", "true"]) {
      await Deno.symlink("busybox", `${root}/bin/${l}`);
    }
    await Deno.writeTextFile(`${root}/cit-id`, `${ref} ${crypto.randomUUID()}\n`);
    if (opts.sizeBytes && opts.sizeBytes > 0) {
      await must(
        runCommand("sh", [
          "-c",
          `head -c ${Math.floor(opts.sizeBytes)} /dev/urandom > "$1"`,
          "sh",
          `${root}/payload.bin`,
        ]),
        "writing the payload",
      );
    }
    const changes = [`LABEL cit=${label}`, ...(opts.env ?? []).map((e) => `ENV ${e}`)]
      .flatMap((c) => ["--change", c]);
    await must(
      runCommand("sh", [
        "-c",
        'd="$1"; shift; tar -C "$d" -c . | docker import "$@"',
        "sh",
        root,
        ...changes,
        "-",
        ref,
      ]),
      `docker import ${ref}`,
    );
    return (await must(runDocker(["image", "inspect", "--format", "{{.Id}}", ref]), "inspect"))
      .trim();
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

/**
 * Rewrites a legacy `docker save` tar into docker 25's layout: `oci-layout`, `index.json`,
 * `blobs/sha256/<hex>` for config, layers and the OCI manifest, plus a `manifest.json` whose
 * Config/Layers point into `blobs/` (so old engines load it too).
 */
export async function toOciLayout(legacyTar: string, outTar: string): Promise<void> {
  const work = await Deno.makeTempDir({ prefix: "cit-oci-" });
  try {
    const src = `${work}/src`;
    const dst = `${work}/dst`;
    await Deno.mkdir(src);
    await Deno.mkdir(`${dst}/blobs/sha256`, { recursive: true });
    await must(runCommand("tar", ["-C", src, "-xf", legacyTar]), "untar");
    const manifest = JSON.parse(await Deno.readTextFile(`${src}/manifest.json`)) as {
      Config: string;
      RepoTags: string[] | null;
      Layers: string[];
    }[];
    const index: { mediaType: string; digest: string; size: number; annotations?: unknown }[] = [];
    const outManifest = [];
    for (const m of manifest) {
      const cfgHex = m.Config.replace(/\.json$/, "").replace(/^.*\//, "");
      const cfgBytes = await Deno.readFile(`${src}/${m.Config}`);
      await Deno.writeFile(`${dst}/blobs/sha256/${cfgHex}`, cfgBytes);
      const layers = [];
      for (const l of m.Layers) {
        const hex = await fileSha256(`${src}/${l}`);
        const size = (await Deno.stat(`${src}/${l}`)).size;
        await Deno.rename(`${src}/${l}`, `${dst}/blobs/sha256/${hex}`).catch(async () => {
          await Deno.copyFile(`${src}/${l}`, `${dst}/blobs/sha256/${hex}`);
        });
        layers.push({ hex, size });
      }
      const ociManifest = new TextEncoder().encode(JSON.stringify({
        schemaVersion: 2,
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        config: {
          mediaType: "application/vnd.oci.image.config.v1+json",
          digest: `sha256:${cfgHex}`,
          size: cfgBytes.length,
        },
        layers: layers.map((l) => ({
          mediaType: "application/vnd.oci.image.layer.v1.tar",
          digest: `sha256:${l.hex}`,
          size: l.size,
        })),
      }));
      const mHex = createHash("sha256").update(ociManifest).digest("hex");
      await Deno.writeFile(`${dst}/blobs/sha256/${mHex}`, ociManifest);
      for (const tag of m.RepoTags ?? [null]) {
        index.push({
          mediaType: "application/vnd.oci.image.manifest.v1+json",
          digest: `sha256:${mHex}`,
          size: ociManifest.length,
          ...(tag
            ? {
              annotations: {
                "io.containerd.image.name": tag,
                "org.opencontainers.image.ref.name": splitTag(tag).tag ?? "latest",
              },
            }
            : {}),
        });
      }
      outManifest.push({
        Config: `blobs/sha256/${cfgHex}`,
        RepoTags: m.RepoTags,
        Layers: layers.map((l) => `blobs/sha256/${l.hex}`),
      });
    }
    await Deno.writeTextFile(`${dst}/oci-layout`, JSON.stringify({ imageLayoutVersion: "1.0.0" }));
    await Deno.writeTextFile(
      `${dst}/index.json`,
      JSON.stringify({
        schemaVersion: 2,
        mediaType: "application/vnd.oci.image.index.v1+json",
        manifests: index,
      }),
    );
    await Deno.writeTextFile(`${dst}/manifest.json`, JSON.stringify(outManifest));
    await must(
      runCommand("tar", [
        "-C",
        dst,
        "--owner=0",
        "--group=0",
        "-cf",
        outTar,
        "blobs",
        "index.json",
        "manifest.json",
        "oci-layout",
      ]),
      "tar oci layout",
    );
  } finally {
    await Deno.remove(work, { recursive: true });
  }
}

/** Writes `checksums.sha256` (sorted, `sha256sum -c` format) for the given digests. */
export async function writeChecksums(
  dir: string,
  digests: Record<string, string>,
  binaryMode = false,
): Promise<void> {
  const lines = Object.keys(digests).sort().map((p) =>
    `${digests[p]} ${binaryMode ? "*" : " "}${p}`
  );
  await Deno.writeTextFile(`${dir}/checksums.sha256`, lines.join("\n") + "\n");
}

/**
 * Builds a bundle of real images in the chosen format. Images are removed from the engine after
 * saving unless `keepImages`. Always call `cleanup()` (in `finally`).
 */
export async function buildBundle(opts: BuildBundleOptions = {}): Promise<BuiltBundle> {
  const format = opts.format ?? "script";
  const label = opts.label ?? randomLabel();
  const prefix = `cit-${label}`;
  const dir = opts.dir ?? await Deno.makeTempDir({ prefix: `cit-bundle-${format}-` });
  await Deno.mkdir(dir, { recursive: true });
  const specs = (opts.images ?? defaultImages(prefix)).map((s) =>
    typeof s === "string" ? { ref: s } : s
  );
  const cleanup = async () => {
    await removeTestImages(label);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  try {
    const images: BuiltImage[] = [];
    const digests: Record<string, string> = {};
    if (format === "admin-ui") await Deno.mkdir(`${dir}/images`, { recursive: true });
    for (const spec of specs) {
      const file = spec.file ??
        (format === "admin-ui" ? adminFileName(spec.ref) : scriptFileName(spec));
      const imageId = await makeImage(spec.ref, label, spec);
      const abs = `${dir}/${file}`;
      const layout = spec.layout ?? opts.layout ?? "legacy";
      const target = layout === "oci" ? `${abs}.legacy` : abs;
      await must(
        runDocker(["save", "-o", target, spec.noRepoTags ? imageId : spec.ref]),
        `docker save ${spec.ref}`,
      );
      if (layout === "oci") {
        await toOciLayout(target, abs);
        await Deno.remove(target);
      }
      const sha256 = await fileSha256(abs);
      digests[file] = sha256;
      images.push({ ref: spec.ref, file, imageId, sha256, size: (await Deno.stat(abs)).size });
    }
    if (!opts.keepImages) {
      for (const img of images) {
        await runDocker(["rmi", "-f", img.imageId]);
      }
    }

    // Models
    const modelDigests: Record<string, string> = {};
    const models = opts.models ?? {};
    if (Object.keys(models).length > 0) {
      const root = format === "admin-ui" ? await Deno.makeTempDir({ prefix: "cit-models-" }) : dir;
      for (const [rel, content] of Object.entries(models)) {
        const p = `${root}/models/${rel}`;
        await Deno.mkdir(p.slice(0, p.lastIndexOf("/")), { recursive: true });
        if (typeof content === "string") await Deno.writeTextFile(p, content);
        else await Deno.writeFile(p, content);
        if (format !== "admin-ui") modelDigests[`models/${rel}`] = await fileSha256(p);
      }
      if (format === "admin-ui") {
        await must(
          runCommand("tar", ["-C", root, "-czf", `${dir}/models.tar.gz`, "models"]),
          "tar models",
        );
        await Deno.remove(root, { recursive: true });
        modelDigests["models.tar.gz"] = await fileSha256(`${dir}/models.tar.gz`);
      }
    }

    // Manifest and extras
    const extraDigests: Record<string, string> = {};
    if (format === "script") {
      const engines = [];
      const infrastructure = [];
      for (const [i, spec] of specs.entries()) {
        const { repo, tag } = splitTag(spec.ref);
        const purpose = spec.optional ? "Test image (optional)" : "Test image";
        const isEngine = spec.engine ?? /vllm|llama/i.test(repo);
        if (isEngine && !spec.untagged) {
          const tagKey = /llama/i.test(repo) ? "tag" : "version";
          engines.push({ name: repo, [tagKey]: tag ?? "latest", file: images[i].file, purpose });
        } else {
          infrastructure.push({
            name: spec.untagged ? repo : spec.ref,
            file: images[i].file,
            purpose,
          });
        }
      }
      await Deno.writeTextFile(
        `${dir}/manifest.json`,
        JSON.stringify(
          {
            created: new Date().toISOString(),
            cortex_version: "0.1.1",
            prepared_by: "cit@test",
            images: { engines, infrastructure },
            deployment_notes: { load_command: "make load-offline" },
          },
          null,
          2,
        ),
      );
      await Deno.writeTextFile(`${dir}/README.txt`, "Cortex offline images (test fixture)\n");
    } else if (format === "admin-ui") {
      const vllm = specs.find((s) => /vllm/i.test(s.ref))?.ref;
      const llama = specs.find((s) => /llama/i.test(s.ref))?.ref;
      const manifestText = JSON.stringify(
        {
          version: "0.1.1",
          created_at: new Date().toISOString(),
          settings: {
            ...(vllm ? { VLLM_IMAGE: vllm } : {}),
            ...(llama ? { LLAMACPP_IMAGE: llama } : {}),
            CORTEX_MODELS_DIR: "/var/cortex/models",
            CORTEX_MODELS_DIR_HOST: "/var/cortex/models",
            HF_CACHE_DIR: "/var/cortex/hf-cache",
            HF_CACHE_DIR_HOST: "/var/cortex/hf-cache",
            OFFLINE_MODE: true,
          },
        },
        null,
        2,
      );
      await Deno.writeTextFile(`${dir}/manifest.json`, manifestText);
      extraDigests["manifest.json"] = await fileSha256(`${dir}/manifest.json`);
      if (opts.adminExtras ?? true) {
        await Deno.mkdir(`${dir}/db`, { recursive: true });
        await Deno.mkdir(`${dir}/manifests`, { recursive: true });
        await Deno.writeTextFile(
          `${dir}/db/cortex.sql`,
          "-- PostgreSQL database dump\n\\restrict abc\nINSERT INTO secrets VALUES ('hf_token', 'hf_FIXTURESECRET');\n\\unrestrict abc\n",
        );
        await Deno.writeTextFile(`${dir}/manifests/models.json`, "[]\n");
        await Deno.writeTextFile(`${dir}/manifests/config_kv.json`, "{}\n");
        for (const p of ["db/cortex.sql", "manifests/models.json", "manifests/config_kv.json"]) {
          extraDigests[p] = await fileSha256(`${dir}/${p}`);
        }
      }
      await Deno.writeTextFile(
        `${dir}/status.json`,
        JSON.stringify({ status: "completed", progress: 100 }),
      );
    }

    const all = { ...digests, ...modelDigests, ...extraDigests };
    if (opts.checksums ?? true) {
      const listed = { ...digests, ...extraDigests };
      if (opts.listModels ?? true) Object.assign(listed, modelDigests);
      await writeChecksums(dir, listed, opts.binaryMode);
    }
    return { dir, label, prefix, images, digests: all, cleanup };
  } catch (e) {
    await cleanup();
    throw e;
  }
}

/** Removes every image labelled `cit=<label>` (all tags, forced). Returns how many IDs. */
export async function removeTestImages(label: string): Promise<number> {
  const r = await runDocker(["images", "-q", "--no-trunc", "--filter", `label=cit=${label}`]);
  const ids = [...new Set(r.stdout.split("\n").map((s) => s.trim()).filter(Boolean))];
  if (ids.length > 0) await runDocker(["rmi", "-f", "--no-prune", ...ids]);
  return ids.length;
}

/** The image ID a ref points to now, or undefined. */
export async function imageIdOf(ref: string): Promise<string | undefined> {
  const r = await runDocker(["image", "inspect", "--format", "{{.Id}}", ref]);
  return r.code === 0 ? r.stdout.trim() : undefined;
}

export interface CorruptOptions {
  /** Flip (XOR 0xff) the byte at this offset; negative counts from the end. */
  flipByteAt?: number;
  /** Cut the file to this many bytes. */
  truncateTo?: number;
  /** Append this many random bytes. */
  appendGarbage?: number;
}

/** Damages a file in place the ways transfer media do. */
export async function corrupt(file: string, o: CorruptOptions): Promise<void> {
  if (o.flipByteAt !== undefined) {
    const size = (await Deno.stat(file)).size;
    const at = o.flipByteAt < 0 ? size + o.flipByteAt : o.flipByteAt;
    using f = await Deno.open(file, { read: true, write: true });
    await f.seek(at, Deno.SeekMode.Start);
    const b = new Uint8Array(1);
    await f.read(b);
    b[0] ^= 0xff;
    await f.seek(at, Deno.SeekMode.Start);
    await f.write(b);
  }
  if (o.truncateTo !== undefined) await Deno.truncate(file, o.truncateTo);
  if (o.appendGarbage) {
    using f = await Deno.open(file, { append: true });
    const g = new Uint8Array(o.appendGarbage);
    for (let i = 0; i < g.length; i += 65536) crypto.getRandomValues(g.subarray(i, i + 65536));
    await f.write(g);
  }
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs `deno run -A main.ts ...args` from the repository root as a subprocess, the way a user
 * runs it. stdin is closed unless given; NO_COLOR is set so output is plain.
 */
export async function runCli(
  args: string[],
  o: { stdin?: string; env?: Record<string, string>; cwd?: string } = {},
): Promise<CliResult> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${REPO_ROOT}/main.ts`, ...args],
    cwd: o.cwd ?? REPO_ROOT,
    env: { NO_COLOR: "1", ...o.env },
    stdin: o.stdin !== undefined ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (o.stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(o.stdin));
    await w.close();
  }
  const out = await child.output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/**
 * How many `docker load` events the engine recorded between two instants (seconds since epoch,
 * fractions kept)
 * for images labelled `cit=<label>` (all images when no label). Docker writes one event per
 * image loaded, with the image's labels as attributes, so parallel tests do not mix.
 */
export async function countLoadEvents(
  sinceSec: number,
  untilSec: number,
  label?: string,
): Promise<number> {
  const events = await loadEvents(sinceSec, untilSec);
  return events.filter((a) => !label || a.Attributes?.cit === label).length;
}

/**
 * Watches the engine's image `load` events from `sinceSec` on, streamed: `docker events --until`
 * answers from the engine's ring buffer of the last 256 events, which a busy parallel suite (health
 * checks, execs) overruns during a long install. `stop()` waits a second for late events, ends the
 * watch and returns the actors seen.
 */
export function watchLoadEvents(sinceSec: number): {
  stop(): Promise<{ ID: string; Attributes?: Record<string, string> }[]>;
} {
  const child = new Deno.Command("docker", {
    args: [
      "events",
      "--since",
      sinceSec.toFixed(6),
      "--filter",
      "type=image",
      "--filter",
      "event=load",
      "--format",
      "{{json .Actor}}",
    ],
    stdout: "piped",
    stderr: "null",
    stdin: "null",
  }).spawn();
  const out = new Response(child.stdout).text();
  return {
    async stop() {
      await new Promise((r) => setTimeout(r, 1000));
      child.kill("SIGTERM");
      await child.status;
      return (await out).split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l));
    },
  };
}

/** The actors (`{ID, Attributes}`) of the engine's image `load` events between two instants. */
export async function loadEvents(
  sinceSec: number,
  untilSec: number,
): Promise<{ ID: string; Attributes?: Record<string, string> }[]> {
  const r = await runDocker([
    "events",
    "--since",
    sinceSec.toFixed(6),
    "--until",
    untilSec.toFixed(6),
    "--filter",
    "type=image",
    "--filter",
    "event=load",
    "--format",
    "{{json .Actor}}",
  ]);
  return r.stdout.split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l));
}
