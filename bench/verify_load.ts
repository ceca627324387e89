/**
 * Bench: single-pass verify+load against Cortex's method, on one big image, in one run.
 *
 *   deno run -A bench/verify_load.ts [--size-mib 1024]
 *
 * Prints times and ratios; asserts nothing (performance lives here, not in tests). Every run
 * starts from the same engine state (the image removed first) and a warm page cache.
 */
import { stopwatch } from "./stopwatch.ts";
import { parseArgs } from "node:util";
import { buildBundle } from "../test/support/fixtures.ts";
import { hashFile } from "../src/hash.ts";
import { readBundle } from "../src/bundle/read.ts";
import { loadReleaseManifest } from "../src/bundle/release.ts";
import { loadImages } from "../src/images/load.ts";
import { createContext } from "../src/context.ts";
import { runCommand, runDocker } from "../src/docker.ts";

const { values } = parseArgs({ args: Deno.args, options: { "size-mib": { type: "string" } } });
const sizeMib = Number(values["size-mib"] ?? 1024);

const label = `bench${crypto.randomUUID().slice(0, 6)}`;
const ref = `cit-${label}/vllm-openai:v0.6.3`;
console.error(`building a bundle with one ${sizeMib} MiB image...`);
const b = await buildBundle({ label, images: [{ ref, sizeBytes: sizeMib * 1024 * 1024 }] });
const img = b.images[0];
const tar = `${b.dir}/${img.file}`;
const { time, summary } = stopwatch(44);
async function must(p: Promise<{ code: number; stderr: string }>, what: string) {
  const r = await p;
  if (r.code !== 0) throw new Error(`${what}: ${r.stderr}`);
}
const rmi = () => runDocker(["rmi", "-f", img.imageId]);
const quiet = () =>
  createContext({ sink: { write: () => {}, isTTY: false }, interactive: false, json: true });

try {
  console.error(`tar: ${(img.size / 1048576).toFixed(0)} MiB`);
  await hashFile(tar); // warm the page cache for everyone
  const ours = await time("sha256: hashFile (node:crypto, 4 MiB reads)", () => hashFile(tar));
  const coreutils = await time(
    "sha256: sha256sum",
    () => must(runCommand("sha256sum", [tar]), "sha256sum"),
  );

  const bundle = await readBundle(b.dir, await loadReleaseManifest());
  await rmi();
  const load = await time("load: ours (hash + docker load, one read)", async () => {
    const r = await loadImages(quiet(), bundle);
    if (r.images[0].verdict !== "loaded") throw new Error(JSON.stringify(r));
  });
  const rerun = await time("load: ours again (already present)", async () => {
    const r = await loadImages(quiet(), bundle);
    if (r.dockerLoads !== 0) throw new Error("re-run loaded");
  });
  await rmi();
  const cortex = await time("load: sha256sum then docker load -i", async () => {
    await must(runCommand("sha256sum", [tar]), "sha256sum");
    await must(runDocker(["load", "-i", tar]), "docker load");
  });
  await rmi();
  const alone = await time(
    "load: docker load -i alone (the floor)",
    () => must(runDocker(["load", "-i", tar]), "docker load"),
  );
  await rmi();

  console.log(
    `\nverify_load bench, ${sizeMib} MiB image (${(img.size / 1048576).toFixed(0)} MiB tar)`,
  );
  for (const line of summary()) console.log(line);
  console.log(`  hashFile vs sha256sum:           ${(coreutils / ours).toFixed(2)}x faster`);
  console.log(`  ours vs docker load alone:       ${(load / alone).toFixed(2)}x the time`);
  console.log(`  ours vs sha256sum + docker load: ${(cortex / load).toFixed(2)}x faster`);
  console.log(`  re-run (present):                ${rerun.toFixed(2)} s`);
} finally {
  await b.cleanup();
}
