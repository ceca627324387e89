import { chainIds } from "../bundle/layerskip.ts";
import { assert, assertEquals, assertMatch, assertRejects } from "../../test/support/assert.ts";
import { dockerSaveTar, sha256 } from "../../test/support/tarbuild.ts";
import { type LoadFailure, ScriptedDocker } from "../../test/support/scripted_docker.ts";
import { createContext } from "../context.ts";
import { ExitCode, InstallError, InterruptedError } from "../errors.ts";
import type { Bundle, TarImage, TarIndex } from "../bundle/types.ts";
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

// ---- loadImages() through the Docker seam (no engine) -------------------------------------

interface FakeTar {
  file: string;
  ref: string;
  imageId: string;
  size: number;
  sha256: string;
}

/** A folder of `docker save` tars built in memory, as the bundle reader would describe it. */
async function fakeBundle(
  specs: { ref: string; layers: (string | Uint8Array)[]; critical?: boolean; garbage?: number }[],
): Promise<{ bundle: Bundle; tars: FakeTar[]; cleanup: () => Promise<void> }> {
  const dir = await Deno.makeTempDir({ prefix: "cit-load-unit-" });
  const tars: FakeTar[] = [];
  for (const s of specs) {
    const save = dockerSaveTar([{ repoTags: [s.ref], layers: s.layers }], "legacy");
    const file = `${s.ref.split("/").pop()!.replace(":", "-")}.tar`;
    // The checksum is the tar's; garbage appended after it is what a damaged copy looks like.
    const bytes = s.garbage
      ? new Uint8Array([...save.tar, ...new Uint8Array(s.garbage).fill(7)])
      : save.tar;
    await Deno.writeFile(`${dir}/${file}`, bytes);
    tars.push({
      file,
      ref: s.ref,
      imageId: save.images[0].imageId,
      size: bytes.length,
      sha256: sha256(save.tar),
    });
  }
  const bundle: Bundle = {
    dir,
    format: "folder",
    files: tars.map((t) => ({
      path: t.file,
      abs: `${dir}/${t.file}`,
      size: t.size,
      kind: "image" as const,
      expected: { sha256: t.sha256, source: "checksums" as const },
    })),
    images: tars.map((t, i) => ({
      file: t.file,
      declaredRefs: [t.ref],
      critical: specs[i].critical ?? true,
    })),
    models: [],
    hasChecksums: true,
    unlisted: [],
    missing: [],
    warnings: [],
  };
  return { bundle, tars, cleanup: () => Deno.remove(dir, { recursive: true }) };
}

function seamCtx(docker: ScriptedDocker, signal?: AbortSignal) {
  const out: string[] = [];
  const ctx = createContext({
    sink: { write: (t) => void out.push(t), isTTY: false },
    interactive: false,
    env: {},
    signal,
    docker,
  });
  return { ctx, out };
}

Deno.test("loadImages() through the seam: one pass per tar, then nothing is read again", async () => {
  const b = await fakeBundle([
    { ref: "cit-u/a:1", layers: ["base", "a"] },
    { ref: "cit-u/b:1", layers: ["base", "b"] },
  ]);
  try {
    const docker = new ScriptedDocker();
    const { ctx } = seamCtx(docker);
    const r1 = await loadImages(ctx, b.bundle);
    assertEquals([r1.ok, r1.dockerLoads], [true, 2]);
    assertEquals(
      r1.images.map((i) => [i.verdict, i.sha256, i.bytes]),
      b.tars.map((t) => [
        "loaded",
        t.sha256,
        t.size,
      ]),
    );
    // Every byte was read and hashed once; docker load got every byte of the first tar, and of
    // the second all but the base layer the first one had just brought (sent empty).
    assertEquals(r1.images.map((i) => i.skippedLayers), [0, 1]);
    assert(r1.images[1].skippedLayerBytes! > 0);
    assertEquals(
      docker.callsOf("load").map((c) => c.stdinBytes),
      b.tars.map((t, k) => t.size - (r1.images[k].skippedLayerBytes ?? 0)),
    );
    assertEquals(ctx.progress.done, b.tars.reduce((s, t) => s + t.size, 0));
    for (const t of b.tars) assertEquals(docker.idOf(t.ref), t.imageId);

    docker.calls.length = 0;
    const r2 = await loadImages(seamCtx(docker).ctx, b.bundle);
    assertEquals([r2.dockerLoads, r2.bytesRead], [0, 0]);
    assertEquals(r2.images.map((i) => i.verdict), ["present", "present"]);
    assertEquals(docker.callsOf("load"), []);
  } finally {
    await b.cleanup();
  }
});

Deno.test("loadImages() undoes a load whose bytes do not match, and points older tags back", async () => {
  const b = await fakeBundle([{ ref: "cit-u/g:1", layers: ["g"], garbage: 1024 }]);
  const [g] = b.tars;
  const OTHER = `sha256:${"e".repeat(64)}`;
  try {
    const docker = new ScriptedDocker();
    const e = await assertRejects(() => loadImages(seamCtx(docker).ctx, b.bundle), InstallError);
    assertEquals(e.exitCode, ExitCode.Integrity);
    assertMatch(
      e.message,
      new RegExp(
        `^Cannot load image "${g.file}": sha256 is [0-9a-f]{12}…, checksums\\.sha256 lists ${
          g.sha256.slice(0, 12)
        }…; nothing of it was kept$`,
      ),
    );
    // docker load accepted the tar (garbage after its end), then the load was undone.
    assertEquals(docker.lines().filter((l) => /^docker (load|tag|rmi)/.test(l)), [
      "docker load",
      "docker rmi --no-prune cit-u/g:1",
      `docker rmi --no-prune ${g.imageId}`,
    ]);
    assertEquals([docker.idOf(g.ref), docker.idOf(g.imageId)], [undefined, undefined]);

    // The same tag pointing at another image before: it is pointed back, that image kept.
    const before = new ScriptedDocker({ images: [{ id: OTHER, tags: ["cit-u/g:1"], layers: [] }] });
    await assertRejects(() => loadImages(seamCtx(before).ctx, b.bundle), InstallError);
    assertEquals(before.lines().filter((l) => /^docker (load|tag|rmi)/.test(l)), [
      "docker load",
      `docker tag ${OTHER} cit-u/g:1`,
      `docker rmi --no-prune ${g.imageId}`,
    ]);
    assertEquals(before.idOf(g.ref), OTHER);
    assertEquals(before.idOf(g.imageId), undefined);
  } finally {
    await b.cleanup();
  }
});

Deno.test("loadImages() maps a docker load that dies half way to exit 5 and undoes it", async () => {
  const b = await fakeBundle([
    { ref: "cit-u/opt:1", layers: ["o"], critical: false },
    { ref: "cit-u/crit:1", layers: ["c"] },
  ]);
  const [opt, crit] = b.tars;
  try {
    const fail: LoadFailure = { afterBytes: 512, leaves: [crit.imageId] };
    // The optional image's load dies: a warning, and the run goes on.
    const d1 = new ScriptedDocker({ failLoad: (n) => n === 0 ? { afterBytes: 512 } : undefined });
    const { ctx, out } = seamCtx(d1);
    const r = await loadImages(ctx, b.bundle);
    assertEquals([r.ok, r.images.map((i) => i.verdict)], [false, ["failed", "loaded"]]);
    assertMatch(out.join(""), new RegExp(`warning: Cannot load image "${opt.file}".*optional`));

    // The critical one's dies: exit 5 with Docker's output, what it left removed.
    const d2 = new ScriptedDocker({ failLoad: (n) => n === 1 ? fail : undefined });
    const e = await assertRejects(() => loadImages(seamCtx(d2).ctx, b.bundle), InstallError);
    assertEquals(e.exitCode, ExitCode.Docker);
    assertMatch(e.message, new RegExp(`"${crit.file}": docker load exited with code 1$`));
    assertMatch(e.detail ?? "", /unexpected EOF/);
    assertEquals(d2.callsOf("load").map((c) => c.stdinBytes), [opt.size, 512]);
    assertEquals(d2.callsOf("rmi").map((c) => c.args.at(-1)), [crit.imageId]);
    assertEquals(d2.idOf(crit.imageId), undefined);
  } finally {
    await b.cleanup();
  }
});

Deno.test("loadImages() stops on abort mid-tar, removes what it created, reads no further", async () => {
  const big = new Uint8Array(32 << 20);
  const b = await fakeBundle([{ ref: "cit-u/big:1", layers: [big] }]);
  try {
    const docker = new ScriptedDocker();
    const ac = new AbortController();
    const { ctx } = seamCtx(docker, ac.signal);
    const orig = ctx.progress.advance.bind(ctx.progress);
    ctx.progress.advance = (n: number) => {
      orig(n);
      if (ctx.progress.done >= 4 << 20) ac.abort();
    };
    await assertRejects(() => loadImages(ctx, b.bundle), InterruptedError);
    // Bounded work: the chunk that saw the abort (1 MiB chunks) was the last one read and sent.
    assertEquals(ctx.progress.done, 4 << 20);
    assertEquals(docker.callsOf("load").map((c) => c.stdinBytes), [4 << 20]);
    assertEquals(docker.idOf(b.tars[0].ref), undefined);
  } finally {
    await b.cleanup();
  }
});
