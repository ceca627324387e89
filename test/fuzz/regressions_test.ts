/**
 * Replays every saved fuzz case (test/fuzz-regressions/<target>/*.bin): each must now pass under
 * the same judge as `deno task fuzz` (accepted with its properties, or refused with our error).
 */
import { REGRESSIONS_DIR, runCase } from "./harness.ts";
import { TARGETS } from "./targets.ts";

const dirs: string[] = [];
for await (const e of Deno.readDir(REGRESSIONS_DIR)) if (e.isDirectory) dirs.push(e.name);
dirs.sort();

Deno.test("fuzz regressions: every saved case names a known target", () => {
  const unknown = dirs.filter((d) => !TARGETS.some((t) => t.name === d));
  if (unknown.length) throw new Error(`no target for ${unknown.join(", ")}`);
});

for (const name of dirs) {
  const t = TARGETS.find((x) => x.name === name);
  if (!t) continue;
  Deno.test(`fuzz regressions: ${name}`, async (ctx) => {
    await t.setup?.();
    try {
      const files = [];
      for await (const f of Deno.readDir(`${REGRESSIONS_DIR}/${name}`)) {
        if (f.isFile && f.name.endsWith(".bin")) files.push(f.name);
      }
      for (const f of files.sort()) {
        await ctx.step(f, async () => {
          const r = await runCase(t, await Deno.readFile(`${REGRESSIONS_DIR}/${name}/${f}`));
          if (!r.ok) throw new Error(`${name}/${f}: ${r.why}`);
        });
      }
    } finally {
      await t.teardown?.();
    }
  });
}
