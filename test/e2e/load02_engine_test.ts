/** load on Cortex 0.2 bundles: skip by images.json's ID, retag to `ref`, refuse damaged lists. */
import { assertEquals, assertMatch, assertRejects } from "../support/assert.ts";
import { buildBundle02, corrupt02 } from "../support/bundle02.ts";
import { countLoadEvents, imageIdOf } from "../support/fixtures.ts";
import { createContext } from "../../src/context.ts";
import { InstallError } from "../../src/errors.ts";
import { runDocker } from "../../src/docker.ts";
import { readBundle } from "../../src/bundle/read.ts";
import { loadReleasePolicies } from "../../src/bundle/release.ts";
import type { TarImage } from "../../src/bundle/types.ts";
import {
  type EngineBefore,
  loadImages,
  presenceById,
  wantedTagsFor,
} from "../../src/images/load.ts";

const POLICIES = await loadReleasePolicies();
const ID1 = "sha256:" + "1".repeat(64);
const ID2 = "sha256:" + "2".repeat(64);
const quiet = () => createContext({ sink: { write: () => {}, isTTY: false }, interactive: false });
const eng = (tags: Record<string, string>, ids: string[]): EngineBefore => ({
  tags: new Map(Object.entries(tags)),
  ids: new Set(ids),
});
const img = (id: string, tags: string[]): TarImage => ({
  repoTags: tags,
  imageId: id,
  diffIds: [],
  layerPaths: [],
  env: [],
});

Deno.test("presenceById(): present, a tag away, or to load", () => {
  assertEquals(presenceById(ID1, ["x:1"], eng({ "x:1": ID1 }, [ID1])), "present");
  assertEquals(presenceById(ID1, ["docker.io/library/x:1"], eng({ "x:1": ID1 }, [ID1])), "present");
  assertEquals(presenceById(ID1, ["x:1"], eng({ "y:1": ID1 }, [ID1])), "tag");
  assertEquals(presenceById(ID1, ["x:1"], eng({ "x:1": ID2 }, [ID1, ID2])), "tag");
  assertEquals(presenceById(ID1, ["x:1"], eng({ "x:1": ID2 }, [ID2])), "load");
  assertEquals(presenceById(ID1, [], eng({}, [ID1])), "tag");
});

Deno.test("wantedTagsFor(): a 0.2 image is tagged as its ref even when the tar names it otherwise", () => {
  const images = [img(ID1, ["vllm/vllm-openai:v1"])];
  assertEquals(Object.fromEntries(wantedTagsFor(images, ["registry.local/vllm:v1"], true)), {
    "vllm/vllm-openai:v1": ID1,
    "registry.local/vllm:v1": ID1,
  });
  assertEquals(Object.fromEntries(wantedTagsFor(images, ["registry.local/vllm:v1"], false)), {
    "vllm/vllm-openai:v1": ID1,
  });
});

const opts = { sanitizeResources: false, sanitizeOps: false };

Deno.test({
  name: "loadImages() on a 0.2 bundle: loads, retags to ref, then skips by ID without opening tars",
  ...opts,
  fn: async () => {
    const label = `l${crypto.randomUUID().slice(0, 8)}`;
    const p = `cit-${label}`;
    const b = await buildBundle02({
      variant: "admin-ui",
      label,
      images: [
        { ref: `${p}/vllm-openai:v0.28.0`, role: "engine" },
        // Saved under another name: Cortex's loader tags the ID as `ref` after loading.
        { ref: `${p}/cortex-gateway:0.2.0`, role: "program", savedAs: `${p}/built/gateway:dev` },
      ],
    });
    try {
      const since = Date.now() / 1000;
      const r1 = await loadImages(quiet(), await readBundle(b.dir, POLICIES));
      assertEquals(r1.images.map((i) => i.verdict), ["loaded", "loaded"]);
      assertEquals(await countLoadEvents(since, Date.now() / 1000 + 1, label), 2);
      for (const i of b.images) assertEquals(await imageIdOf(i.ref), i.imageId, i.ref);
      assertEquals(await imageIdOf(`${p}/built/gateway:dev`), b.images[1].imageId);

      // Truncated tars: only a decision made from images.json's IDs can still say "present".
      for (const i of b.images) await Deno.truncate(`${b.dir}/${i.file}`, 100);
      const since2 = Date.now() / 1000;
      const r2 = await loadImages(quiet(), await readBundle(b.dir, POLICIES));
      assertEquals(r2.images.map((i) => i.verdict), ["present", "present"]);
      assertEquals([r2.dockerLoads, r2.bytesRead], [0, 0]);
      assertEquals(await countLoadEvents(since2, Date.now() / 1000 + 1, label), 0);

      // The ID present under another name only: a tag, no load.
      await runDocker(["tag", b.images[0].imageId, `${p}/elsewhere:1`]);
      await runDocker(["rmi", b.images[0].ref]);
      assertEquals(await imageIdOf(b.images[0].ref), undefined);
      const r3 = await loadImages(quiet(), await readBundle(b.dir, POLICIES));
      assertEquals(r3.dockerLoads, 0);
      assertEquals(r3.images[0].verdict, "present");
      assertMatch(r3.images[0].message!, /tagged as/);
      assertEquals(await imageIdOf(b.images[0].ref), b.images[0].imageId);
    } finally {
      await b.cleanup();
    }
  },
});

Deno.test({
  name: "loadImages() refuses a 0.2 bundle whose images.json disagrees, before any docker load",
  ...opts,
  fn: async () => {
    const b = await buildBundle02({ variant: "script" });
    try {
      await corrupt02(b.dir, { imagesJson: "disagree" });
      const since = Date.now() / 1000;
      const e = await assertRejects(
        async () => loadImages(quiet(), await readBundle(b.dir, POLICIES)),
        InstallError,
        /images\.json lists sha256 000000000000…, checksums\.sha256 lists/,
      );
      assertEquals(e.exitCode, 4);
      assertEquals(await countLoadEvents(since, Date.now() / 1000 + 1, b.label), 0);
      for (const i of b.images) assertEquals(await imageIdOf(i.ref), undefined);
    } finally {
      await b.cleanup();
    }
  },
});
