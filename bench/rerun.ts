/**
 * Bench: the re-run of an installed, unchanged bundle (issue #4 goal: under 2 s whatever the
 * bundle's size). Installs a bundle whose engine image is ~1 GiB, then times `install` again as
 * a user runs it (`deno run -A main.ts install ...`, a fresh process each time).
 *
 *   deno run -A bench/rerun.ts [--size-mib 1024] [--runs 3]
 *
 * Prints times; asserts nothing.
 */
import { parseArgs } from "node:util";
import { runCli } from "../test/support/fixtures.ts";
import { buildReleases, newWorld } from "../test/support/release_fixture.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: { "size-mib": { type: "string" }, runs: { type: "string" } },
});
const sizeMib = Number(values["size-mib"] ?? 1024);
const runs = Number(values.runs ?? 3);

const w = await newWorld();
try {
  console.error(`building a bundle with a ${sizeMib} MiB engine image...`);
  const [r] = await buildReleases(w, [{
    version: "0.1.1",
    images: [
      {
        repo: "vllm-openai",
        tag: "v0.6.3",
        marker: "v",
        engine: true,
        payload: sizeMib * 1024 * 1024,
      },
      { repo: "postgres", tag: "16", marker: "p" },
      { repo: "cortex-gateway", tag: "latest", marker: "g" },
    ],
    models: { "tiny/config.json": "{}\n" },
  }]);
  const args = [...w.installArgs(r.dir), "--json"];
  let t = performance.now();
  const first = await runCli(args);
  if (first.code !== 0) throw new Error(first.stderr);
  console.log(
    `first install (loads the image):     ${((performance.now() - t) / 1000).toFixed(2)} s`,
  );
  for (let i = 0; i < runs; i++) {
    t = performance.now();
    const again = await runCli(args);
    const s = (performance.now() - t) / 1000;
    const j = JSON.parse(again.stdout);
    if (again.code !== 0 || j.outcome !== "unchanged") throw new Error(again.stderr);
    console.log(
      `re-run ${i + 1} (outcome ${j.outcome}), whole process: ${s.toFixed(2)} s` +
        ` (install itself: ${(j.durations.total / 1000).toFixed(2)} s)`,
    );
  }
  t = performance.now();
  await runCli(["--help"]);
  console.log(
    `deno start-up alone (--help):         ${((performance.now() - t) / 1000).toFixed(2)} s`,
  );
} finally {
  await w.cleanup();
}
