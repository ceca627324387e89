/**
 * Synthetic images and bundles for the benchmark suite, built on the real engine without any
 * pull: a busybox root filesystem `docker import`ed with a layer of random bytes, then more layers
 * of random bytes committed from containers (so every layer's size is exact and nothing
 * compresses or deduplicates), saved with `docker save` into a script-format (0.1.1) bundle with
 * `checksums.sha256`. Every image carries `LABEL cit=<label>`; `removeLabelled` removes only those.
 */
import { createHash } from "node:crypto";
import { sh, tryRun } from "./proc.ts";

export const MiB = 1024 * 1024;

/** SHA-256 hex of a file (streamed), for the bundle's checksums. */
export async function sha256File(path: string): Promise<string> {
  const h = createHash("sha256");
  using f = await Deno.open(path);
  const buf = new Uint8Array(4 * MiB);
  while (true) {
    const n = await f.read(buf);
    if (n === null) break;
    h.update(buf.subarray(0, n));
  }
  return h.digest("hex");
}

/**
 * An image of busybox plus `layers.length` layers of random bytes (`layers[i]` bytes each; the
 * first goes into the imported base). With `base`, builds on that image instead of importing
 * (every layer of `layers` is then committed on top). Returns the image ID.
 */
export async function layeredImage(
  ref: string,
  label: string,
  layers: number[],
  o: { base?: string; work: string } = { work: "/tmp" },
): Promise<string> {
  let from = o.base;
  let rest = layers;
  const tmpRefs: string[] = [];
  if (!from) {
    const root = await Deno.makeTempDir({ prefix: "cit-bench-rootfs-", dir: o.work });
    try {
      await Deno.mkdir(`${root}/bin`);
      await Deno.copyFile("/bin/busybox", `${root}/bin/busybox`);
      await Deno.chmod(`${root}/bin/busybox`, 0o755);
      for (const l of ["sh", "head", "cat", "echo", "true"]) {
        await Deno.symlink("busybox", `${root}/bin/${l}`);
      }
      await Deno.writeTextFile(`${root}/cit-id`, `${ref} ${crypto.randomUUID()}\n`);
      if ((layers[0] ?? 0) > 0) {
        await sh(["sh", "-c", `head -c ${layers[0]} /dev/urandom > "$1"`, "sh", `${root}/l0.bin`]);
      }
      from = rest.length > 1 ? `${ref}-base` : ref;
      await sh([
        "sh",
        "-c",
        'tar -C "$1" -c . | docker import --change "LABEL cit=$2" --change \'CMD ["sh"]\' - "$3"',
        "sh",
        root,
        label,
        from,
      ]);
      if (from !== ref) tmpRefs.push(from);
      rest = layers.slice(1);
    } finally {
      await Deno.remove(root, { recursive: true }).catch(() => {});
    }
  }
  for (const [i, bytes] of rest.entries()) {
    const target = i === rest.length - 1 ? ref : `${ref}-l${i}`;
    const cid = await sh([
      "docker",
      "create",
      "--network",
      "none",
      "--label",
      `cit=${label}`,
      from!,
      "sh",
      "-c",
      `head -c ${bytes} /dev/urandom > /l${i + 1}-${crypto.randomUUID().slice(0, 8)}.bin`,
    ]);
    try {
      await sh(["docker", "start", "-a", cid]);
      await sh(["docker", "commit", "--change", `LABEL cit=${label}`, cid, target]);
    } finally {
      await tryRun(["docker", "rm", "-f", cid]);
    }
    if (target !== ref) tmpRefs.push(target);
    from = target;
  }
  // Intermediate tags are only names: the final image keeps their layers.
  for (const t of tmpRefs) await tryRun(["docker", "rmi", "--no-prune", t]);
  return await sh(["docker", "image", "inspect", "--format", "{{.Id}}", ref]);
}

/** One image of a bundle. */
export interface BundleImage {
  ref: string;
  /** File name in the bundle, e.g. `vllm-openai-v0.6.3.tar`. */
  file: string;
  engine?: boolean;
  id: string;
  size: number;
}

/** Cortex's script-package file name of a ref: `<repo base>-<tag>.tar`. */
export function tarName(ref: string): string {
  const colon = ref.lastIndexOf(":");
  const repo = ref.slice(0, colon).split("/").pop();
  return `${repo}-${ref.slice(colon + 1)}.tar`;
}

/**
 * `docker save`s each image into `dir` and writes a script-format bundle around them
 * (manifest.json, checksums.sha256). Returns the images with their tar sizes.
 */
export async function saveBundle(
  dir: string,
  images: { ref: string; id: string; engine?: boolean }[],
): Promise<BundleImage[]> {
  await Deno.mkdir(dir, { recursive: true });
  const out: BundleImage[] = [];
  const lines: string[] = [];
  for (const img of images) {
    const file = tarName(img.ref);
    await sh(["docker", "save", "-o", `${dir}/${file}`, img.ref]);
    lines.push(`${await sha256File(`${dir}/${file}`)}  ${file}`);
    out.push({ ...img, file, size: (await Deno.stat(`${dir}/${file}`)).size });
  }
  await writeManifest(dir, out);
  await Deno.writeTextFile(`${dir}/checksums.sha256`, lines.sort().join("\n") + "\n");
  return out;
}

/** The 0.1.1 script-package manifest.json for these images. */
export async function writeManifest(dir: string, images: BundleImage[]): Promise<void> {
  const split = (ref: string) => {
    const c = ref.lastIndexOf(":");
    return { name: ref.slice(0, c), tag: ref.slice(c + 1) };
  };
  const engines = images.filter((i) => i.engine).map((i) => ({
    name: split(i.ref).name,
    [/llama/.test(i.ref) ? "tag" : "version"]: split(i.ref).tag,
    file: i.file,
    purpose: "engine (bench)",
  }));
  const infrastructure = images.filter((i) => !i.engine).map((i) => ({
    name: i.ref,
    file: i.file,
    purpose: "bench",
  }));
  await Deno.writeTextFile(
    `${dir}/manifest.json`,
    JSON.stringify(
      {
        created: new Date().toISOString(),
        cortex_version: "0.1.1",
        prepared_by: "cit-bench",
        images: { engines, infrastructure },
      },
      null,
      2,
    ),
  );
}

/** Image IDs labelled `cit=<label>`. */
export async function labelled(label: string): Promise<string[]> {
  const out = await sh(["docker", "images", "-q", "--no-trunc", "--filter", `label=cit=${label}`]);
  return [...new Set(out.split("\n").map((s) => s.trim()).filter(Boolean))];
}

/** Removes refs (only the bench's own), ignoring the missing. */
export async function removeRefs(refs: string[]): Promise<void> {
  if (refs.length > 0) await tryRun(["docker", "rmi", "-f", ...refs]);
}

/** Removes every image labelled `cit=<label>` (children first: a few passes). */
export async function removeLabelled(label: string): Promise<void> {
  for (let pass = 0; pass < 4; pass++) {
    const ids = await labelled(label);
    if (ids.length === 0) return;
    for (const id of ids) await tryRun(["docker", "rmi", "-f", id]);
  }
}
