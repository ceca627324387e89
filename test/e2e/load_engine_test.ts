/**
 * loadImages() in process against the real engine (the real runner, not the scripted seam): the
 * engine's own answers to a load (a tar with garbage appended is accepted by `docker load`, an
 * interrupted load, an unreachable daemon). Images under unique `cit-<label>/` refs, removed in
 * `finally`. The same paths run engine-free in src/images/load_test.ts.
 */
import { assert, assertEquals, assertMatch, assertRejects } from "../support/assert.ts";
import {
  buildBundle,
  type BuiltBundle,
  corrupt,
  countLoadEvents,
  imageIdOf,
  makeImage,
  removeTestImages,
} from "../support/fixtures.ts";
import { createContext } from "../../src/context.ts";
import { ExitCode, InstallError, InterruptedError } from "../../src/errors.ts";
import type { Bundle } from "../../src/bundle/types.ts";
import { processDocker, runDocker } from "../../src/docker.ts";
import { loadImages } from "../../src/images/load.ts";

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
