/**
 * `deno task fuzz [--seed N] [--count N | --long] [--target a,b] [--report] [--no-save]`: runs
 * the property tests over every parser of untrusted input. Prints the seed; exits 1 when a case
 * fails (saved under test/fuzz-regressions/<target>/). `--report` writes docs/RELIABILITY.md.
 */
import { DEFAULT_SEED } from "./harness.ts";
import { runTargets, type TargetResult } from "./run.ts";
import { TARGETS } from "./targets.ts";
import { writeReport } from "./report.ts";

/** Cases per target in the default form (CI-sized: a few thousand in all). */
export const DEFAULT_COUNT = 100;
/** `--long`: this many times the default. */
export const LONG_FACTOR = 25;

function arg(name: string): string | undefined {
  const i = Deno.args.indexOf(name);
  if (i >= 0) return Deno.args[i + 1];
  const eq = Deno.args.find((a) => a.startsWith(`${name}=`));
  return eq?.slice(name.length + 1);
}

function usage(msg: string): never {
  console.error(
    `error: ${msg}\nusage: deno task fuzz [--seed N] [--count N | --long] [--target a,b] [--report] [--no-save]`,
  );
  Deno.exit(2);
}

const seedText = arg("--seed");
const seed = seedText === undefined ? DEFAULT_SEED : Number(seedText);
if (!Number.isSafeInteger(seed) || seed < 0) {
  usage(`--seed must be a non-negative integer, got ${seedText}`);
}
const countText = arg("--count");
const count = countText !== undefined
  ? Number(countText)
  : Deno.args.includes("--long")
  ? DEFAULT_COUNT * LONG_FACTOR
  : DEFAULT_COUNT;
if (!Number.isSafeInteger(count) || count < 1) {
  usage(`--count must be a positive integer, got ${countText}`);
}
const only = arg("--target")?.split(",");
const targets = only ? TARGETS.filter((t) => only.includes(t.name)) : TARGETS;
if (only && targets.length !== only.length) {
  usage(`unknown target in ${only.join(",")}; targets: ${TARGETS.map((t) => t.name).join(", ")}`);
}

console.log(
  `fuzz: seed ${seed}, ${count} cases per target (times its weight), ${targets.length} targets`,
);
const t0 = performance.now();
const results: TargetResult[] = await runTargets(targets, {
  seed,
  count,
  save: !Deno.args.includes("--no-save"),
  onTarget: (r) => {
    console.log(
      `${r.failed ? "FAIL" : "ok  "} ${r.name.padEnd(20)} ${String(r.cases).padStart(6)} cases  ` +
        `${String(r.accepted).padStart(5)} accepted  ${String(r.refused).padStart(5)} refused  ` +
        `max ${Math.round(r.maxMs)} ms`,
    );
    for (const f of r.failures) {
      console.log(`     ${f.why}${f.saved ? `\n     saved: ${f.saved}` : ""}`);
    }
  },
});
const secs = (performance.now() - t0) / 1000;
const total = results.reduce((s, r) => s + r.cases, 0);
const failed = results.reduce((s, r) => s + r.failed, 0);
console.log(`fuzz: ${total} cases in ${secs.toFixed(1)} s, ${failed} failed (seed ${seed})`);
if (Deno.args.includes("--report")) {
  const path = await writeReport({ seed, count, results, seconds: secs });
  console.log(`fuzz: wrote ${path}`);
}
Deno.exit(failed > 0 ? 1 : 0);
