/**
 * Model seeding throughput, measured side by side on one 1 GiB file (page cache warm for all):
 * - copy: seedModels (read + SHA-256 + write in one pass, fsync, staged rename) vs `cp` and
 *   `cp` + `sync` (seedModels fsyncs, so the fair floor includes the flush);
 * - hash: hashFile (node:crypto, pipelined reads) vs coreutils `sha256sum`.
 * Run: deno run -A bench/models.ts [sizeMiB]
 */
import { createContext } from "../src/context.ts";
import { hashFile } from "../src/install/copy.ts";
import { planModels, seedModels } from "../src/install/models.ts";

const sizeMiB = Number(Deno.args[0] ?? 1024);
const root = await Deno.makeTempDir({ prefix: "cit-bench-models-" });
const quiet = { write: () => {}, isTTY: false };

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await fn();
  return (performance.now() - t) / 1000;
}

async function sh(cmd: string, ...args: string[]): Promise<void> {
  const r = await new Deno.Command(cmd, { args, stdout: "null", stderr: "inherit" }).output();
  if (!r.success) throw new Error(`${cmd} failed`);
}

try {
  const src = `${root}/bundle/models/bench`;
  await Deno.mkdir(src, { recursive: true });
  // Random-ish content (compressible data would not change hashing speed, but keep it honest).
  const f = await Deno.open(`${src}/model.gguf`, { write: true, create: true });
  const block = new Uint8Array(1024 * 1024);
  for (let i = 0; i < block.length; i += 65536) {
    crypto.getRandomValues(block.subarray(i, i + 65536));
  }
  for (let i = 0; i < sizeMiB; i++) {
    block[0] = i & 255;
    await f.write(block);
  }
  f.close();
  await sh("sync");
  await sh("cat", `${src}/model.gguf`); // warm the page cache for every contender

  const runs = 2;
  const best = (xs: number[]) => Math.min(...xs);
  const seed: number[] = [], cp: number[] = [], cpSync: number[] = [];
  const hash: number[] = [], sum: number[] = [];
  for (let r = 0; r < runs; r++) {
    const models = `${root}/models-${r}`;
    const plan = await planModels([{ kind: "folder", name: "bench", path: "models/bench" }], {
      modelsDir: models,
      hfCacheDir: `${root}/hf`,
      bundleDir: `${root}/bundle`,
      expected: new Map(),
    });
    await sh("sync");
    seed.push(await timed(() => seedModels(createContext({ sink: quiet, env: {} }), plan)));
    await Deno.remove(models, { recursive: true });
    await sh("sync");
    cp.push(await timed(() => sh("cp", `${src}/model.gguf`, `${root}/cp-${r}`)));
    await sh("sync");
    await Deno.remove(`${root}/cp-${r}`);
    await sh("sync");
    cpSync.push(
      await timed(async () => {
        await sh("cp", `${src}/model.gguf`, `${root}/cps-${r}`);
        await sh("sync", `${root}/cps-${r}`);
      }),
    );
    await Deno.remove(`${root}/cps-${r}`);
    await sh("sync");
    hash.push(await timed(() => hashFile(`${src}/model.gguf`)));
    sum.push(await timed(() => sh("sha256sum", `${src}/model.gguf`)));
  }
  const fmt = (s: number) => `${s.toFixed(2)} s (${(sizeMiB / 1024 / s).toFixed(2)} GiB/s)`;
  console.log(`file: ${sizeMiB} MiB, best of ${runs}`);
  console.log(`seedModels copy+hash+fsync: ${fmt(best(seed))}`);
  console.log(`cp:                         ${fmt(best(cp))}`);
  console.log(`cp + sync:                  ${fmt(best(cpSync))}`);
  console.log(`hashFile:                   ${fmt(best(hash))}`);
  console.log(`sha256sum:                  ${fmt(best(sum))}`);
  console.log(`copy speed vs cp:        ${(best(cp) / best(seed)).toFixed(2)}x (goal >= 0.9x)`);
  console.log(`copy speed vs cp + sync: ${(best(cpSync) / best(seed)).toFixed(2)}x`);
  console.log(`hash speed vs sha256sum: ${(best(sum) / best(hash)).toFixed(2)}x (goal >= 2x)`);
} finally {
  await Deno.remove(root, { recursive: true });
}
