/**
 * Real images for the layer-blanking tests and benchmark: a base A and B = A + one layer, built
 * in the engine under a unique `cit-state-` namespace, and a `docker load` fed through the
 * blanking transform. Outside the program: the real docker CLI directly.
 */
import { skipLayersTransform, type SkipStats } from "../../src/bundle/layerskip.ts";
import { runCommand, runDocker } from "../../src/docker.ts";

/** Runs a command; throws with its stderr when it fails; returns its trimmed stdout. */
export async function sh(cmd: string[], stdin?: ReadableStream<Uint8Array>) {
  const r = await runCommand(cmd[0], cmd.slice(1), { stdin });
  if (r.code !== 0) throw new Error(`${cmd.join(" ")} failed: ${r.stderr}`);
  return r.stdout.trim();
}

export interface SavedImage {
  id: string;
  diffIds: string[];
  layerPaths: string[];
}

/** Reads the first image of a legacy `docker save` tar with GNU tar (not the code under test). */
export async function readSaved(tarPath: string): Promise<SavedImage> {
  const manifest = JSON.parse(await sh(["tar", "-xOf", tarPath, "manifest.json"]));
  const config = JSON.parse(await sh(["tar", "-xOf", tarPath, manifest[0].Config]));
  const hex = manifest[0].Config.replace(/^blobs\/sha256\//, "").replace(/\.json$/, "");
  return { id: `sha256:${hex}`, diffIds: config.rootfs.diff_ids, layerPaths: manifest[0].Layers };
}

/** Builds base A (busybox, a unique file, optionally big) and B = A + one RUN layer. */
export async function makeImages(dir: string, bigMiB = 0) {
  const tag = `cit-state-${crypto.randomUUID().slice(0, 8)}`;
  const root = `${dir}/root`;
  await Deno.mkdir(`${root}/bin`, { recursive: true });
  await Deno.copyFile("/bin/busybox", `${root}/bin/busybox`);
  for (const l of ["sh", "cat", "echo"]) await Deno.symlink("busybox", `${root}/bin/${l}`);
  await Deno.writeTextFile(`${root}/unique`, tag);
  if (bigMiB) await sh(["sh", "-c", `head -c ${bigMiB}M /dev/urandom > ${root}/big`]);
  const a = `${tag}/a:1`;
  const b = `${tag}/b:1`;
  await sh(["sh", "-c", `tar -C ${root} -c . | docker import --change 'LABEL cit=1' - ${a}`]);
  await Deno.writeTextFile(`${dir}/Dockerfile`, `FROM ${a}\nRUN echo x-${tag} > /f\n`);
  await Deno.writeTextFile(`${dir}/.dockerignore`, "*\n");
  await sh(["docker", "build", "--network", "none", "-q", "-t", b, dir]);
  return { a, b, tag };
}

/** Streams a tar through the transform into `docker load`. */
export async function loadBlanked(tarPath: string, blank: Set<string>) {
  const stats: SkipStats = { blanked: [], skippedBytes: 0, gaveUp: false };
  const file = await Deno.open(tarPath);
  const r = await runDocker(["load"], {
    stdin: file.readable.pipeThrough(skipLayersTransform(blank, stats)),
  });
  return { r, stats };
}
