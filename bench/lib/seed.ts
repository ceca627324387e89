/**
 * The model-seeding step of `install` as its own process, for the suite's models and memory cases
 * (install has no models-only command): plans and seeds `models/<name>` of a bundle folder into
 * `<modelsDir>/<name>` with the bundle's checksums as the authority (copy + SHA-256 + fsync +
 * rename, exactly the install's code), then prints the verdict as JSON.
 *
 *   deno run -A bench/lib/seed.ts BUNDLE_DIR NAME MODELS_DIR
 *   deno run -A bench/lib/seed.ts --hash FILE     (hashFile alone: one core's SHA-256 of the file)
 */
import { createContext } from "../../src/context.ts";
import { planModels } from "../../src/host/models/plan.ts";
import { seedModels } from "../../src/host/models/copy.ts";
import { hashFile } from "../../src/hash.ts";

if (import.meta.main) {
  if (Deno.args[0] === "--hash") {
    console.log(JSON.stringify(await hashFile(Deno.args[1])));
    Deno.exit(0);
  }
  const [bundleDir, name, modelsDir] = Deno.args;
  const expected = new Map<string, string>();
  for (const line of (await Deno.readTextFile(`${bundleDir}/checksums.sha256`)).split("\n")) {
    const m = /^([0-9a-f]{64}) [ *](.+)$/.exec(line.trim());
    if (m) expected.set(m[2], m[1]);
  }
  const plan = await planModels([{ kind: "folder", name, path: `models/${name}` }], {
    modelsDir,
    hfCacheDir: `${modelsDir}/.hf`,
    bundleDir,
    expected,
  });
  const ctx = createContext({ sink: { write: () => {}, isTTY: false }, env: {} });
  const r = await seedModels(ctx, plan);
  console.log(JSON.stringify({ verdict: r.models[0]?.verdict, bytes: r.bytes }));
  Deno.exit(r.models[0]?.verdict === "copied" ? 0 : 1);
}
