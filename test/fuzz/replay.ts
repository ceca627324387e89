/** `deno run -A test/fuzz/replay.ts <target> <file>...`: runs saved cases and prints each outcome. */
import { runCase } from "./harness.ts";
import { TARGETS } from "./targets.ts";

const [name, ...files] = Deno.args;
const t = TARGETS.find((x) => x.name === name);
if (!t) {
  console.error(`unknown target "${name}"; targets: ${TARGETS.map((x) => x.name).join(", ")}`);
  Deno.exit(2);
}
await t.setup?.();
let bad = 0;
for (const f of files) {
  const r = await runCase(t, await Deno.readFile(f));
  if (!r.ok) bad++;
  console.log(`${r.ok ? (r.refused ? "refused" : "accepted") : `FAIL ${r.why}`}  ${f}`);
}
await t.teardown?.();
Deno.exit(bad ? 1 : 0);
