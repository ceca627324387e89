/**
 * Bench: an upgrade whose engine image shares 90% of its bytes (a CUDA-like base layer) with the
 * installed one. Times our load of the new tar (every byte hashed, the present base layer sent
 * to `docker load` empty) against a plain `docker load -i` of the same tar, and against our load
 * with layer skipping off. Same engine state before each (the new image removed, the old kept).
 *
 *   deno run -A bench/upgrade.ts [--size-mib 1024] [--runs 2]
 *
 * Prints times and ratios; asserts nothing.
 */
import { stopwatch } from "./stopwatch.ts";
import { parseArgs } from "node:util";
import { fileSha256, writeChecksums } from "../test/support/fixtures.ts";
import { readBundle } from "../src/bundle/read.ts";
import { loadReleaseManifest } from "../src/bundle/release.ts";
import { loadImages } from "../src/images/load.ts";
import { createContext } from "../src/context.ts";
import { runCommand, runDocker } from "../src/docker.ts";
import { hashFile } from "../src/hash.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: { "size-mib": { type: "string" }, runs: { type: "string" } },
});
const sizeMib = Number(values["size-mib"] ?? 1024);
const runs = Number(values.runs ?? 2);
const baseMib = Math.round(sizeMib * 0.9);
const newMib = sizeMib - baseMib;

const label = `bench${crypto.randomUUID().slice(0, 6)}`;
const ns = `cit-${label}`;
const work = await Deno.makeTempDir({ prefix: "cit-bench-upgrade-" });

async function must(p: Promise<{ code: number; stdout: string; stderr: string }>, what: string) {
  const r = await p;
  if (r.code !== 0) throw new Error(`${what}: ${r.stderr}`);
  return r.stdout.trim();
}

async function commit(base: string, ref: string, script: string): Promise<string> {
  const cid = await must(
    runDocker(["create", "--network", "none", base, "busybox", "sh", "-c", script]),
    "create",
  );
  try {
    await must(runDocker(["start", "-a", cid]), "start");
    await must(runDocker(["commit", "--change", `LABEL cit=${label}`, cid, ref]), "commit");
  } finally {
    await runDocker(["rm", "-f", cid]);
  }
  return await must(runDocker(["image", "inspect", "--format", "{{.Id}}", ref]), "inspect");
}

const quiet = () =>
  createContext({ sink: { write: () => {}, isTTY: false }, interactive: false, json: true });
const { time, summary } = stopwatch(52);

try {
  console.error(`building: base layer ${baseMib} MiB, new layer ${newMib} MiB...`);
  const root = `${work}/root`;
  await Deno.mkdir(`${root}/bin`, { recursive: true });
  await Deno.copyFile("/bin/busybox", `${root}/bin/busybox`);
  await Deno.chmod(`${root}/bin/busybox`, 0o755);
  await Deno.symlink("busybox", `${root}/bin/sh`);
  await must(
    runCommand("sh", ["-c", `head -c ${baseMib}M /dev/urandom > "$1"`, "sh", `${root}/cuda.bin`]),
    "payload",
  );
  await must(
    runCommand("sh", [
      "-c",
      `tar -C "$1" -c . | docker import --change "LABEL cit=${label}" - ${ns}/base:1`,
      "sh",
      root,
    ]),
    "import",
  );
  await Deno.remove(root, { recursive: true });
  await commit(`${ns}/base:1`, `${ns}/vllm-openai:v0.6.3`, "echo old > /engine");
  const v2 = `${ns}/vllm-openai:v0.6.4`;
  const v2Id = await commit(
    `${ns}/base:1`,
    v2,
    `busybox head -c ${newMib * 1048576} /dev/urandom > /engine`,
  );
  const bundleDir = `${work}/bundle`;
  await Deno.mkdir(bundleDir);
  const tar = `${bundleDir}/vllm-openai-v0.6.4.tar`;
  await must(runDocker(["save", "-o", tar, v2]), "save");
  await writeChecksums(bundleDir, { "vllm-openai-v0.6.4.tar": await fileSha256(tar) });
  const size = (await Deno.stat(tar)).size;
  const rmiV2 = () => must(runDocker(["rmi", v2Id]), "rmi v2");
  await rmiV2();
  const bundle = await readBundle(bundleDir, await loadReleaseManifest());
  await hashFile(tar); // warm the page cache for everyone

  let skipped = 0;
  const ours: number[] = [];
  const plain: number[] = [];
  const full: number[] = [];
  for (let i = 0; i < runs; i++) {
    ours.push(
      await time(`ours, present layers left out (run ${i + 1})`, async () => {
        const r = await loadImages(quiet(), bundle);
        if (r.images[0].verdict !== "loaded") throw new Error(JSON.stringify(r));
        skipped = r.skippedLayerBytes ?? 0;
      }),
    );
    await rmiV2();
    plain.push(
      await time(
        `docker load -i (run ${i + 1})`,
        () => must(runDocker(["load", "-i", tar]), "load"),
      ),
    );
    await rmiV2();
    full.push(
      await time(`ours, layer skipping off (run ${i + 1})`, async () => {
        const r = await loadImages(quiet(), bundle, { noLayerSkip: true });
        if (r.images[0].verdict !== "loaded") throw new Error(JSON.stringify(r));
      }),
    );
    await rmiV2();
  }
  const best = (a: number[]) => Math.min(...a);
  console.log(
    `\nupgrade bench: ${(size / 1048576).toFixed(0)} MiB tar, ${
      (skipped / 1048576).toFixed(0)
    } MiB of it in layers the engine has (${((100 * skipped) / size).toFixed(0)}%)`,
  );
  for (const line of summary()) console.log(line);
  console.log(
    `  best: ours ${best(ours).toFixed(2)} s, docker load ${best(plain).toFixed(2)} s, ours ` +
      `without skipping ${best(full).toFixed(2)} s`,
  );
  console.log(`  docker load / ours: ${(best(plain) / best(ours)).toFixed(2)}x faster`);
} finally {
  const r = await runDocker(["images", "-q", "--no-trunc", "--filter", `label=cit=${label}`]);
  const ids = [...new Set(r.stdout.split("\n").filter(Boolean))];
  for (const id of ids) await runDocker(["rmi", "-f", id]);
  for (const id of ids) await runDocker(["rmi", "-f", id]);
  await Deno.remove(work, { recursive: true }).catch(() => {});
}
