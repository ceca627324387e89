/**
 * The layer-blanking stream against the real engine: `docker load` takes an image whose base
 * layers were left out when the engine has them, and refuses the stream when it does not
 * (fails closed). Images under unique `cit-state-` refs, removed in `finally`.
 */
import { assert, assertEquals, assertMatch, assertNotEquals } from "../support/assert.ts";
import { layersToBlank, presentChains } from "../../src/bundle/layerskip.ts";
import { inspectImages, processDocker, runDocker } from "../../src/docker.ts";
import { loadBlanked, makeImages, readSaved, sh } from "../support/layer_images.ts";

Deno.test({
  name: "skipLayersTransform() lets docker load an image whose base layers are left out",
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "cit-state-layerskip-" });
    const { a, b } = await makeImages(dir);
    try {
      await sh(["docker", "save", "-o", `${dir}/b.tar`, b]);
      const saved = await readSaved(`${dir}/b.tar`);
      assertEquals(saved.diffIds.length, 2);
      assertEquals(await sh(["docker", "image", "inspect", "-f", "{{.Id}}", b]), saved.id);
      await sh(["docker", "rmi", b]);
      const aInfo = (await inspectImages(processDocker(), [a])).get(a)!;
      const blank = layersToBlank(saved, presentChains([aInfo.layers]));
      assertEquals([...blank], [saved.layerPaths[0]]);

      const { r, stats } = await loadBlanked(`${dir}/b.tar`, blank);
      assertEquals(r.code, 0, r.stderr);
      assertEquals(stats.blanked, [saved.layerPaths[0]]);
      assert(stats.skippedBytes > 1_000_000, `skipped ${stats.skippedBytes}`);
      assertEquals(await sh(["docker", "image", "inspect", "-f", "{{.Id}}", b]), saved.id);
      const f = await sh(["docker", "run", "--rm", "--network", "none", b, "cat", "/f"]);
      assertMatch(f, /^x-cit-state-/);

      // Fails closed: without the base in the engine, the blanked stream cannot load.
      await sh(["docker", "rmi", b, a]);
      const again = await loadBlanked(`${dir}/b.tar`, blank);
      assertNotEquals(again.r.code, 0);
      assertEquals((await inspectImages(processDocker(), [b])).size, 0);
    } finally {
      await runDocker(["rmi", b, a]);
      await Deno.remove(dir, { recursive: true });
    }
  },
});
