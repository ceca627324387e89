/**
 * Layer blanking, measured: with a 1 GiB base already in the engine, `docker load -i` of the
 * upgraded image against our blanked stream (the base layer sent empty), and `sha256sum` alone
 * for scale. Needs a Docker engine (classic image store). Run: deno run -A bench/layerskip.ts
 */
import { layersToBlank, presentChains } from "../src/bundle/layerskip.ts";
import { inspectImages, processDocker, runDocker } from "../src/docker.ts";
import { loadBlanked, makeImages, readSaved, sh } from "../test/support/layer_images.ts";

const assertEquals = (a: unknown, b: unknown, msg?: string) => {
  if (a !== b) throw new Error(`${msg ?? "not equal"}: ${a} !== ${b}`);
};

if (import.meta.main) {
  const dir = await Deno.makeTempDir({ prefix: "cit-state-layerskip-" });
  const { a, b } = await makeImages(dir, 1024);
  try {
    await sh(["docker", "save", "-o", `${dir}/b.tar`, b]);
    const saved = await readSaved(`${dir}/b.tar`);
    const aInfo = (await inspectImages(processDocker(), [a])).get(a)!;
    const blank = layersToBlank(saved, presentChains([aInfo.layers]));
    const time = async (f: () => Promise<unknown>) => {
      await sh(["docker", "rmi", b]);
      const t0 = performance.now();
      await f();
      return ((performance.now() - t0) / 1000).toFixed(2);
    };
    const plain = await time(() => sh(["docker", "load", "-i", `${dir}/b.tar`]));
    const blanked = await time(async () => {
      const { r } = await loadBlanked(`${dir}/b.tar`, blank);
      assertEquals(r.code, 0, r.stderr);
    });
    const hashOnly = await time(() => sh(["sha256sum", `${dir}/b.tar`]));
    await sh(["docker", "image", "inspect", b]).catch(() =>
      sh(["docker", "load", "-i", `${dir}/b.tar`])
    );
    console.log(
      `1 GiB base present: docker load ${plain}s, blanked load ${blanked}s (sha256sum alone ${hashOnly}s)`,
    );
  } finally {
    await runDocker(["rmi", b, a]);
    await Deno.remove(dir, { recursive: true });
  }
}
