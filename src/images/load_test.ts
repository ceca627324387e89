import { chainIds } from "../bundle/layerskip.ts";
import { assert, assertEquals, assertMatch, assertRejects } from "../../test/support/assert.ts";
import {
  buildBundle,
  type BuiltBundle,
  corrupt,
  countLoadEvents,
  imageIdOf,
  makeImage,
  removeTestImages,
} from "../../test/support/fixtures.ts";
import { createContext } from "../context.ts";
import { ExitCode, InstallError, InterruptedError } from "../errors.ts";
import type { Bundle, TarImage, TarIndex } from "../bundle/types.ts";
import { processDocker, runDocker } from "../docker.ts";
import {
  type EngineBefore,
  isPresent,
  loadImages,
  newLayerBytes,
  planUndo,
  selected,
  wantedTags,
} from "./load.ts";

const ID1 = "sha256:" + "1".repeat(64);
const ID2 = "sha256:" + "2".repeat(64);
const ID3 = "sha256:" + "3".repeat(64);
const img = (id: string, tags: string[]): TarImage => ({
  repoTags: tags,
  imageId: id,
  diffIds: [],
  layerPaths: [],
  env: [],
});
const eng = (tags: Record<string, string>, ids: string[]): EngineBefore => ({
  tags: new Map(Object.entries(tags)),
  ids: new Set(ids),
});

Deno.test("wantedTags() maps RepoTags, or declared refs for an untagged tar", async (t) => {
  const cases = [
    {
      name: "tagged",
      images: [img(ID1, ["docker.io/library/postgres:16"])],
      declared: ["x:1"],
      want: { "postgres:16": ID1 },
    },
    {
      name: "untagged tar takes declared refs",
      images: [img(ID1, [])],
      declared: ["x:1"],
      want: { "x:1": ID1 },
    },
    { name: "untagged without refs", images: [img(ID1, [])], declared: [], want: {} },
  ];
  for (const c of cases) {
    await t.step(c.name, () => {
      assertEquals(Object.fromEntries(wantedTags(c.images, c.declared)), c.want);
    });
  }
});

Deno.test("isPresent() needs every tag at its image ID", async (t) => {
  const images = [img(ID1, ["a:1", "a:2"])];
  const want = wantedTags(images, []);
  const cases = [
    { name: "all tags right", before: eng({ "a:1": ID1, "a:2": ID1 }, [ID1]), present: true },
    { name: "one tag missing", before: eng({ "a:1": ID1 }, [ID1]), present: false },
    {
      name: "same tag, other ID",
      before: eng({ "a:1": ID1, "a:2": ID2 }, [ID1, ID2]),
      present: false,
    },
    { name: "nothing", before: eng({}, []), present: false },
  ];
  for (const c of cases) {
    await t.step(c.name, () => assertEquals(isPresent(images, want, c.before), c.present));
  }
  await t.step("untagged tar: present when its ID exists", () => {
    const u = [img(ID3, [])];
    assertEquals(isPresent(u, new Map(), eng({}, [ID3])), true);
    assertEquals(isPresent(u, new Map(), eng({}, [])), false);
  });
});

Deno.test("planUndo() removes only what the load created", async (t) => {
  const images = [img(ID1, ["a:1", "a:2", "a:3"])];
  const want = wantedTags(images, []);
  const cases = [
    {
      name: "fresh engine: untag all, remove the ID",
      before: eng({}, []),
      after: eng({ "a:1": ID1, "a:2": ID1, "a:3": ID1 }, [ID1]),
      plan: { untag: ["a:1", "a:2", "a:3"], retag: [], removeIds: [ID1] },
    },
    {
      name: "a tag that pointed elsewhere is pointed back; an unchanged one is kept",
      before: eng({ "a:1": ID2, "a:2": ID1 }, [ID2, ID1]),
      after: eng({ "a:1": ID1, "a:2": ID1, "a:3": ID1 }, [ID2, ID1]),
      plan: { untag: ["a:3"], retag: [[ID2, "a:1"]], removeIds: [] },
    },
    {
      name: "the load created nothing",
      before: eng({}, []),
      after: eng({}, []),
      plan: { untag: [], retag: [], removeIds: [] },
    },
  ];
  for (const c of cases) {
    await t.step(c.name, () => assertEquals(planUndo(images, want, c.before, c.after), c.plan));
  }
});

Deno.test("selected() matches --only by file, base name or ref", async (t) => {
  const cases: [string[] | undefined, boolean][] = [
    [undefined, true],
    [[], true],
    [["images/x.tar"], true],
    [["x.tar"], true],
    [["docker.io/library/postgres:16"], true],
    [["redis:7"], false],
  ];
  for (const [only, want] of cases) {
    await t.step(
      String(only),
      () => assertEquals(selected(only, "images/x.tar", ["postgres:16"]), want),
    );
  }
});

// ---- Against the real engine -------------------------------------------------------------

function testCtx(signal?: AbortSignal) {
  const out: string[] = [];
  const ctx = createContext({
    sink: { write: (t) => out.push(t), isTTY: false },
    interactive: false,
    signal,
  });
  return { ctx, out };
}

/** A Bundle for the step from what the fixture built (readBundle's job in the program). */
function asBundle(b: BuiltBundle, critical = (_ref: string) => true): Bundle {
  return {
    dir: b.dir,
    format: "script",
    files: b.images.map((i) => ({
      path: i.file,
      abs: `${b.dir}/${i.file}`,
      size: i.size,
      kind: "image" as const,
      expected: { sha256: i.sha256, source: "checksums" as const },
    })),
    images: b.images.map((i) => ({
      file: i.file,
      declaredRefs: [i.ref],
      critical: critical(i.ref),
    })),
    models: [],
    hasChecksums: true,
    unlisted: [],
    missing: [],
    warnings: [],
  };
}

const opts = { sanitizeResources: false, sanitizeOps: false };

Deno.test({
  name: "loadImages() loads once, then finds everything present",
  ...opts,
  fn: async () => {
    const b = await buildBundle({
      images: ["cit-LBL/a:1", "cit-LBL/b:1"].map((r) =>
        r.replace("LBL", crypto.randomUUID().slice(0, 8))
      ),
    });
    try {
      const { ctx } = testCtx();
      const since1 = Date.now() / 1000;
      const r1 = await loadImages(ctx, asBundle(b));
      assertEquals(await countLoadEvents(since1, Date.now() / 1000 + 1, b.label), 2);
      assertEquals(r1.ok, true);
      assertEquals(r1.dockerLoads, 2);
      assertEquals(r1.images.map((i) => i.verdict), ["loaded", "loaded"]);
      for (const i of b.images) {
        assertEquals(await imageIdOf(i.ref), i.imageId);
        const e = r1.images.find((x) => x.file === i.file)!;
        assertEquals([e.sha256, e.bytes, e.imageId], [i.sha256, i.size, i.imageId]);
      }
      assertEquals(ctx.progress.done, b.images.reduce((s, i) => s + i.size, 0));

      const since = Date.now() / 1000;
      const r2 = await loadImages(testCtx().ctx, asBundle(b));
      const until = Date.now() / 1000 + 1;
      assertEquals(r2.dockerLoads, 0);
      assertEquals(r2.bytesRead, 0);
      assertEquals(r2.images.map((i) => i.verdict), ["present", "present"]);
      assertEquals(await countLoadEvents(since, until, b.label), 0);
    } finally {
      await b.cleanup();
    }
  },
});

Deno.test({
  name: "loadImages() removes what a tar with garbage appended loaded, and keeps older tags",
  ...opts,
  fn: async () => {
    const b = await buildBundle({ images: [`cit-${crypto.randomUUID().slice(0, 8)}/g:1`] });
    const other = `${b.prefix}/other:1`;
    try {
      const [g] = b.images;
      await corrupt(`${b.dir}/${g.file}`, { appendGarbage: 1024 });
      const { ctx } = testCtx();
      const e = await assertRejects(() => loadImages(ctx, asBundle(b)), InstallError);
      assertEquals(e.exitCode, ExitCode.Integrity);
      assertMatch(
        e.message,
        new RegExp(
          `^Cannot load image "${g.file}": sha256 is [0-9a-f]{12}…, checksums\\.sha256 lists ${
            g.sha256.slice(0, 12)
          }…`,
        ),
      );
      assertEquals(await imageIdOf(g.ref), undefined);
      assertEquals(await imageIdOf(g.imageId), undefined);

      // The same tag pointing at another image before: it is pointed back, that image kept.
      const otherId = await makeImage(other, b.label);
      await runDocker(["tag", otherId, g.ref]);
      await assertRejects(() => loadImages(testCtx().ctx, asBundle(b)), InstallError);
      assertEquals(await imageIdOf(g.ref), otherId);
      assertEquals(await imageIdOf(other), otherId);
      assertEquals(await imageIdOf(g.imageId), undefined);
    } finally {
      await b.cleanup();
    }
  },
});

Deno.test({
  name: "loadImages() continues past an optional image and refuses unlisted tars",
  ...opts,
  fn: async () => {
    const p = `cit-${crypto.randomUUID().slice(0, 8)}`;
    const b = await buildBundle({ images: [`${p}/postgres:16`, `${p}/extra:1`] });
    try {
      const [pg, extra] = b.images;
      await corrupt(`${b.dir}/${extra.file}`, { flipByteAt: Math.floor(extra.size / 2) });
      const bundle = asBundle(b, (r) => r.includes("postgres"));
      const { ctx, out } = testCtx();
      const r = await loadImages(ctx, bundle);
      assertEquals(r.ok, false);
      assertEquals(r.images.map((i) => i.verdict), ["loaded", "failed"]);
      assertMatch(r.warnings.join("\n"), new RegExp(`"${extra.file}".*optional image, continuing`));
      assertMatch(out.join(""), /warning: Cannot load image/);
      assertEquals(await imageIdOf(pg.ref), pg.imageId);
      assertEquals(await imageIdOf(extra.ref), undefined);

      // Unlisted critical tar: refused before reading it.
      await removeTestImages(b.label);
      bundle.files[0].expected = undefined;
      const e = await assertRejects(
        () => loadImages(testCtx().ctx, bundle),
        InstallError,
        /no checksum or pin covers it/,
      );
      assertEquals(e.exitCode, ExitCode.Integrity);
      assertEquals(await imageIdOf(pg.ref), undefined);
      const r2 = await loadImages(testCtx().ctx, bundle, { allowUnlisted: true, only: [pg.file] });
      assertEquals(r2.images.map((i) => [i.file, i.verdict]), [[pg.file, "loaded"]]);
    } finally {
      await b.cleanup();
    }
  },
});

Deno.test({
  name: "loadImages() loads the OCI layout and an untagged dcgm entry",
  ...opts,
  fn: async () => {
    const b = await buildBundle({ layout: "oci" });
    try {
      const bundle = asBundle(b);
      const dcgm = b.images.find((i) => i.file === "dcgm-exporter.tar")!;
      bundle.images.find((i) => i.file === dcgm.file)!.declaredRefs = [];
      const r = await loadImages(testCtx().ctx, bundle);
      assertEquals(r.images.map((i) => i.verdict), ["loaded", "loaded", "loaded"]);
      assertEquals(r.images.find((i) => i.file === dcgm.file)!.refs, [dcgm.ref]);
      for (const i of b.images) assertEquals(await imageIdOf(i.ref), i.imageId);
    } finally {
      await b.cleanup();
    }
  },
});

Deno.test({
  name: "loadImages() stops on abort and leaves nothing behind",
  ...opts,
  fn: async () => {
    const b = await buildBundle({
      images: [{ ref: `cit-${crypto.randomUUID().slice(0, 8)}/big:1`, sizeBytes: 64 << 20 }],
    });
    try {
      const ac = new AbortController();
      const { ctx } = testCtx(ac.signal);
      // Abort once some bytes went through.
      const orig = ctx.progress.advance.bind(ctx.progress);
      ctx.progress.advance = (n: number) => {
        orig(n);
        if (ctx.progress.done > 8 << 20) ac.abort();
      };
      await assertRejects(() => loadImages(ctx, asBundle(b)), InterruptedError);
      assertEquals(await imageIdOf(b.images[0].ref), undefined);
      assertEquals(await imageIdOf(b.images[0].imageId), undefined);
    } finally {
      await b.cleanup();
    }
  },
});

Deno.test({
  name: "loadImages() maps a docker failure to exit 5 with Docker's output",
  ...opts,
  fn: async () => {
    const b = await buildBundle({ images: [`cit-${crypto.randomUUID().slice(0, 8)}/d:1`] });
    try {
      const { ctx } = testCtx();
      ctx.docker = processDocker({ env: { DOCKER_HOST: "unix:///nonexistent.sock" } });
      const e = await assertRejects(() => loadImages(ctx, asBundle(b)), InstallError);
      assertEquals(e.exitCode, ExitCode.Docker);
      assertMatch(e.message, /docker load exited with code 1/);
      assert((e.detail ?? "").length > 0, "detail holds Docker's output");
    } finally {
      await b.cleanup();
    }
  },
});

Deno.test("newLayerBytes() counts only the layers the engine lacks", async (t) => {
  const d = (c: string) => `sha256:${c.repeat(64)}`;
  const index: TarIndex = {
    layout: "legacy",
    compressed: false,
    images: [{
      repoTags: ["x/eng:2"],
      imageId: d("f"),
      diffIds: [d("a"), d("b")],
      layerPaths: ["base/layer.tar", "top/layer.tar"],
      env: [],
    }],
    entrySizes: { "base/layer.tar": 900, "top/layer.tar": 100, "manifest.json": 1 },
  };
  await t.step("nothing present: every layer", () => {
    assertEquals(newLayerBytes(index, new Set()), 1000);
    assertEquals(newLayerBytes(index, undefined), 1000);
  });
  await t.step("the base chain present: only the top layer", () => {
    assertEquals(newLayerBytes(index, new Set(chainIds([d("a")]))), 100);
  });
  await t.step("a compressed tar cannot be blanked: every layer", () => {
    assertEquals(newLayerBytes({ ...index, compressed: true }, new Set(chainIds([d("a")]))), 1000);
  });
});
