import { Rng, runCase } from "./harness.ts";
import { TARGETS } from "./targets.ts";
const t = TARGETS.find((x) => x.name === Deno.args[0])!;
await t.setup?.();
const rng = new Rng(20261001).fork(t.name);
for (let i = 0; i < Number(Deno.args[1] ?? 200); i++) {
  const input = await t.gen(rng);
  const r = await runCase(t, input);
  if (r.ms > 300) {
    let msg = "";
    try {
      await t.check(input);
    } catch (e) {
      msg = String((e as Error).message).slice(0, 150);
    }
    console.log(i, "check", Math.round(r.ms), "len", input.length, msg);
    await Deno.writeFile(`/tmp/fz-slow-${i}.bin`, input);
  }
}
await t.teardown?.();
