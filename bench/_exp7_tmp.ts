import { createContext } from "../src/context.ts";
import { copyHashed } from "../src/install/copy.ts";
import { planModels, seedModels } from "../src/install/models.ts";
const root = "/tmp/j/e7";
try {
  Deno.removeSync(root, { recursive: true });
} catch {}
Deno.mkdirSync(`${root}/bundle/models/b`, { recursive: true });
Deno.linkSync("/tmp/j/src.bin", `${root}/bundle/models/b/model.gguf`);
function cpu() {
  const f = Deno.readTextFileSync("/proc/self/stat").split(") ")[1].split(" ");
  return f.slice(11, 15).reduce((s, x) => s + Number(x), 0) / 100;
}
const quiet = { write: () => {}, isTTY: false };
for (let r = 0; r < 3; r++) {
  for (const k of ["seed", "copy", "seedNoProgress"]) {
    try {
      Deno.removeSync(`${root}/out`, { recursive: true });
    } catch {}
    Deno.mkdirSync(`${root}/out`);
    new Deno.Command("sync").outputSync();
    const c0 = cpu();
    const t = performance.now();
    if (k === "copy") await copyHashed(`${root}/bundle/models/b/model.gguf`, `${root}/out/f`);
    else {
      const plan = await planModels([{ kind: "folder", name: "b", path: "models/b" }], {
        modelsDir: `${root}/out/m`,
        hfCacheDir: `${root}/out/h`,
        bundleDir: `${root}/bundle`,
        expected: new Map(),
      });
      const ctx = createContext({ sink: quiet, env: {} });
      if (k === "seedNoProgress") ctx.progress.advance = () => {};
      await seedModels(ctx, plan);
    }
    console.log(k, ((performance.now() - t) / 1000).toFixed(2), "cpu", (cpu() - c0).toFixed(2));
  }
}
Deno.removeSync(root, { recursive: true });
