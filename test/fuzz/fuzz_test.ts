/**
 * The CI form of `deno task fuzz`: every target with a few cases from the fixed seed (the full
 * default run is `deno task fuzz`; `--long` for more). Fails on any case the judge fails.
 */
import { DEFAULT_SEED } from "./harness.ts";
import { runTargets } from "./run.ts";
import { TARGETS } from "./targets.ts";

/** Cases per target in CI (times the target's weight). */
const CI_COUNT = 12;

Deno.test(`fuzz (CI form): ${TARGETS.length} targets, seed ${DEFAULT_SEED}`, async (t) => {
  const results = await runTargets(TARGETS, { seed: DEFAULT_SEED, count: CI_COUNT, save: false });
  for (const r of results) {
    await t.step(`${r.name}: ${r.cases} cases`, () => {
      if (r.failed > 0) {
        throw new Error(
          `${r.failed} of ${r.cases} failed:\n${r.failures.map((f) => f.why).join("\n")}`,
        );
      }
    });
  }
});
