import { assert, assertEquals, assertMatch, assertRejects } from "../../../test/support/assert.ts";
import { buildTar, gzip, sha256, type TarSpecEntry } from "../../../test/support/tarbuild.ts";
import { type Context, createContext } from "../../context.ts";
import { InstallError, InterruptedError } from "../../errors.ts";
import type { ModelSource } from "../../bundle/types.ts";
import { STAGING_PREFIX } from "../../layout.ts";
import { checkCompleteness, planModels } from "./plan.ts";
import { seedModels, type VerifiedModel } from "./copy.ts";
import { cleanStaging } from "./staging.ts";
import { treeDigest } from "./tree.ts";
import { emptyJournal, markVerified, verifiedSha256 } from "../../state/journal.ts";

const quiet = { write: () => {}, isTTY: false };

function ctxWith(signal?: AbortSignal): Context {
  return createContext({
    sink: quiet,
    signal,
    env: {},
    interactive: false,
    cwd: "/",
    execDir: "/",
  });
}

interface Env {
  root: string;
  bundle: string;
  models: string;
  hf: string;
}

async function withEnv(fn: (e: Env) => Promise<void>): Promise<void> {
  const root = await Deno.makeTempDir({ prefix: "cit-models-" });
  const e = { root, bundle: `${root}/bundle`, models: `${root}/var/models`, hf: `${root}/var/hf` };
  await Deno.mkdir(e.bundle);
  try {
    await fn(e);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

/** Writes bundle/models/<name>/<files> and returns the expected digests map entries. */
async function bundleFolder(
  e: Env,
  name: string,
  files: Record<string, string | Uint8Array>,
  expected = new Map<string, string>(),
): Promise<Map<string, string>> {
  for (const [rel, data] of Object.entries(files)) {
    const p = `${e.bundle}/models/${name}/${rel}`;
    await Deno.mkdir(p.slice(0, p.lastIndexOf("/")), { recursive: true });
    if (typeof data === "string") await Deno.writeTextFile(p, data);
    else await Deno.writeFile(p, data);
    expected.set(`models/${name}/${rel}`, sha256(typeof data === "string" ? data : data));
  }
  return expected;
}

async function ls(dir: string): Promise<string[]> {
  const out: string[] = [];
  try {
    for await (const x of Deno.readDir(dir)) out.push(x.name);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  return out.sort();
}

const HF = { "config.json": "{}", "tokenizer.json": "{}", "model.safetensors": "weights" };

async function seed(e: Env, sources: ModelSource[], expected: Map<string, string>, opts = {}) {
  const plan = await planModels(sources, {
    modelsDir: e.models,
    hfCacheDir: e.hf,
    bundleDir: e.bundle,
    expected,
  });
  return { plan, result: await seedModels(ctxWith(), plan, opts) };
}

const folder = (name: string): ModelSource => ({ kind: "folder", name, path: `models/${name}` });

Deno.test("checkCompleteness() finds missing split parts and HF files", async (t) => {
  const cases: [string, string[], number, number][] = [
    ["complete gguf set", ["m-00001-of-00002.gguf", "m-00002-of-00002.gguf"], 0, 0],
    ["missing gguf part", ["m-00001-of-00003.gguf", "m-00003-of-00003.gguf"], 1, 0],
    [
      "sharded safetensors",
      ["config.json", "tokenizer.json", "model-00001-of-00002.safetensors"],
      1,
      0,
    ],
    ["hf without config/tokenizer", ["model.safetensors"], 0, 2],
    ["hf complete", ["config.json", "tokenizer.model", "model.safetensors"], 0, 0],
    ["single gguf", ["m.Q4_K_M.gguf"], 0, 0],
  ];
  for (const [label, files, missing, warnings] of cases) {
    await t.step(label, () => {
      const c = checkCompleteness(files);
      assertEquals(c.missing.length, missing, c.missing.join());
      assertEquals(c.warnings.length, warnings, c.warnings.join());
    });
  }
  await t.step("names the missing part numbers", () => {
    const c = checkCompleteness(["x/m-00002-of-00004.gguf"]);
    assertMatch(c.missing[0], /lacks parts 1, 3, 4 of 4/);
  });
});

Deno.test("seedModels() copies a folder, skips it on re-run and keeps conflicts", async (t) => {
  await withEnv(async (e) => {
    const big = new Uint8Array(9 * 1024 * 1024 + 3);
    crypto.getRandomValues(big.subarray(0, 65536));
    const expected = await bundleFolder(e, "tiny", { ...HF, "sub/model.safetensors": big });
    await bundleFolder(e, "other", HF, expected);

    await t.step("copy: byte identical, verdict copied, no staging left", async () => {
      const { plan, result } = await seed(e, [folder("tiny")], expected);
      assertEquals(plan.items[0].action, "copy");
      assertEquals(plan.filesystems.length, 1);
      assertEquals(plan.filesystems[0].bytes, big.length + 2 + 2 + 7);
      assertEquals(result.models[0].verdict, "copied");
      assertEquals(result.models[0].files, 4);
      assertEquals(result.bytes, big.length + 11);
      assertEquals(
        sha256(await Deno.readFile(`${e.models}/tiny/sub/model.safetensors`)),
        sha256(big),
      );
      assertEquals(await Deno.readTextFile(`${e.models}/tiny/config.json`), "{}");
      assertEquals(await ls(e.models), ["tiny"]);
    });

    await t.step("second run: compared and skipped", async () => {
      const { plan, result } = await seed(e, [folder("tiny")], expected);
      assertEquals(plan.items[0].action, "compare");
      assertEquals(result.models[0].verdict, "skipped");
      assertEquals(result.bytes, 0);
    });

    await t.step("conflict: different content kept untouched, other models continue", async () => {
      await Deno.mkdir(`${e.models}/other`);
      await Deno.writeTextFile(`${e.models}/other/config.json`, "mine");
      const before = await Deno.stat(`${e.models}/other/config.json`);
      await new Promise((r) => setTimeout(r, 20));
      const { result } = await seed(e, [folder("other"), folder("tiny")], expected);
      assertEquals(result.models.map((m) => m.verdict), ["conflict", "skipped"]);
      assertEquals(result.conflicts, 1);
      assertMatch(result.models[0].warnings.join(), /kept as is/);
      assertEquals(await ls(`${e.models}/other`), ["config.json"]);
      assertEquals(await Deno.readTextFile(`${e.models}/other/config.json`), "mine");
      const after = await Deno.stat(`${e.models}/other/config.json`);
      assertEquals(after.mtime?.getTime(), before.mtime?.getTime());
    });

    await t.step("conflict found by hashing when names and sizes agree", async () => {
      await Deno.remove(`${e.models}/other`, { recursive: true });
      await Deno.mkdir(`${e.models}/other`);
      for (const [k, v] of Object.entries(HF)) {
        await Deno.writeTextFile(`${e.models}/other/${k}`, v);
      }
      await Deno.writeTextFile(`${e.models}/other/model.safetensors`, "WEIGHTS");
      const { plan, result } = await seed(e, [folder("other")], expected);
      assertEquals(plan.items[0].action, "compare");
      assertEquals(result.models[0].verdict, "conflict");
      assertMatch(result.models[0].warnings.join(), /model\.safetensors" differs/);
      assertEquals(await Deno.readTextFile(`${e.models}/other/model.safetensors`), "WEIGHTS");
    });
  });
});

Deno.test("re-runs: a folder hashed before and unchanged since is skipped unread", async (t) => {
  await withEnv(async (e) => {
    const big = new Uint8Array(3 * 1024 * 1024 + 5);
    crypto.getRandomValues(big.subarray(0, 65536));
    const expected = await bundleFolder(e, "m", { ...HF, "sub/model.safetensors": big });
    const target = `${e.models}/m`;
    // What the install does with the state journal (src/steps/install.ts).
    const journal = emptyJournal();
    const records: VerifiedModel[] = [];
    const onVerified = (m: VerifiedModel) => {
      records.push(m);
      for (const f of m.files) markVerified(journal, f.path, f.stat, f.sha256, f.verifiedAt);
    };
    const knownDigest = (p: string, st: Deno.FileInfo) => verifiedSha256(journal, p, st);
    const plan = (known = knownDigest) =>
      planModels([folder("m")], {
        modelsDir: e.models,
        hfCacheDir: e.hf,
        bundleDir: e.bundle,
        expected,
        knownDigest: known,
      });
    // A clock 3 s ahead: records made right after a copy are otherwise "racy" (mtime in the same
    // clock tick, or a whole-second mtime that looks coarse) and trusted only one run later.
    const later = { ...ctxWith(), now: () => new Date(Date.now() + 3000) };

    await t.step("a copy reports each installed file with its digest and stat", async () => {
      const p = await plan();
      assertEquals(p.items[0].action, "copy");
      const r = await seedModels(later, p, { onVerified });
      assertEquals(r.models[0].verdict, "copied");
      assertEquals(records.length, 1);
      const rec = records[0];
      assertEquals(rec.target, target);
      assertEquals(rec.files.map((f) => f.rel).sort(), [
        "config.json",
        "model.safetensors",
        "sub/model.safetensors",
        "tokenizer.json",
      ]);
      assertEquals(rec.bytes, big.length + 11);
      for (const f of rec.files) {
        assertEquals(f.path, `${target}/${f.rel}`);
        assertEquals(f.sha256, expected.get(`models/m/${f.rel}`));
        const st = await Deno.lstat(f.path);
        assertEquals([f.stat.ino, f.stat.size, f.stat.mtime?.getTime()], [
          st.ino,
          st.size,
          st.mtime?.getTime(),
        ]);
      }
      assertEquals(rec.sha256Tree, treeDigest(rec.files));
    });

    await t.step("next plan: unchanged, nothing to read; seed skips it", async () => {
      const p = await plan();
      assertEquals(p.items[0].action, "unchanged");
      assertEquals(p.bytes, 0);
      const ctx = ctxWith();
      const r = await seedModels(ctx, p, { onVerified });
      assertEquals(r.models[0].verdict, "skipped");
      assertEquals(r.models[0].files, 4);
      assertEquals(ctx.progress.total, 0);
      assertEquals(ctx.progress.done, 0);
      assertEquals(records.length, 1); // nothing new was hashed
    });

    await t.step("without the journal the same folder is compared (hashed)", async () => {
      const p = await plan(() => undefined);
      assertEquals(p.items[0].action, "compare");
      assertEquals(p.bytes, big.length + 11);
    });

    await t.step("'unchanged' trusts the stat: seed does not read the files", async () => {
      // A predicate that vouches for every file while one differs (same size): had seedModels
      // read it, the verdict would be a conflict.
      const p0 = `${target}/model.safetensors`;
      const st = await Deno.lstat(p0);
      await Deno.writeTextFile(p0, "WEIGHTS");
      await Deno.utime(p0, st.atime!, st.mtime!);
      const p = await plan((path) => expected.get(`models/m/${path.slice(target.length + 1)}`));
      assertEquals(p.items[0].action, "unchanged");
      assertEquals((await seedModels(ctxWith(), p)).models[0].verdict, "skipped");
    });

    await t.step("content changed (same size): hashed, a conflict", async () => {
      // Deno reports ctime in whole seconds, so a rewrite with the mtime set back within the
      // same second would not show; give the file the mtime a rewrite gives it.
      const now = new Date(Date.now() + 5000);
      await Deno.utime(`${target}/model.safetensors`, now, now);
      const p = await plan();
      assertEquals(p.items[0].action, "compare");
      const r = await seedModels(ctxWith(), p, { onVerified });
      assertEquals(r.models[0].verdict, "conflict");
      assertMatch(r.models[0].warnings.join(), /model\.safetensors" differs/);
      assertEquals(records.length, 1);
      await Deno.writeTextFile(`${target}/model.safetensors`, "weights");
    });

    await t.step("a compare that matches records the folder: the run after skips it", async () => {
      const p = await plan();
      assertEquals(p.items[0].action, "compare");
      const r = await seedModels(later, p, { onVerified });
      assertEquals(r.models[0].verdict, "skipped");
      assertEquals(records.length, 2);
      assertEquals(records[1].sha256Tree, records[0].sha256Tree);
      assertEquals((await plan()).items[0].action, "unchanged");
    });

    await t.step(
      "a file replaced by another one (new inode, same mtime) is hashed again",
      async () => {
        const p0 = `${target}/config.json`;
        const st = await Deno.lstat(p0);
        await Deno.writeTextFile(`${p0}.new`, "{}");
        await Deno.utime(`${p0}.new`, st.atime!, st.mtime!);
        await Deno.rename(`${p0}.new`, p0);
        assert((await Deno.lstat(p0)).ino !== st.ino);
        assertEquals((await plan()).items[0].action, "compare");
      },
    );
  });
});

Deno.test("seedModels() fails on a digest mismatch and leaves nothing visible", async () => {
  await withEnv(async (e) => {
    const expected = await bundleFolder(e, "tiny", HF);
    expected.set("models/tiny/model.safetensors", "0".repeat(64));
    const err = await assertRejects(
      () => seed(e, [folder("tiny")], expected),
      InstallError,
      /sha256 of "model\.safetensors" is [0-9a-f]{12}…, the bundle lists 000000000000…/,
    );
    assertEquals(err.exitCode, 4);
    assertEquals(await ls(e.models), []);
  });
});

Deno.test("planModels() refuses files the checksums do not list", async () => {
  await withEnv(async (e) => {
    const expected = await bundleFolder(e, "tiny", HF);
    await Deno.writeTextFile(`${e.bundle}/models/tiny/extra.bin`, "x");
    await assertRejects(
      () => seed(e, [folder("tiny")], expected),
      InstallError,
      /"models\/tiny\/extra\.bin" is not listed/,
    );
  });
});

Deno.test("an interruption mid-copy leaves no half model; cleanStaging removes leftovers", async () => {
  await withEnv(async (e) => {
    const big = new Uint8Array(20 * 1024 * 1024);
    const expected = await bundleFolder(e, "big", { ...HF, "model.safetensors": big });
    const plan = await planModels([folder("big")], {
      modelsDir: e.models,
      hfCacheDir: e.hf,
      bundleDir: e.bundle,
      expected,
    });
    const ac = new AbortController();
    const ctx = ctxWith(ac.signal);
    const advance = ctx.progress.advance.bind(ctx.progress);
    let calls = 0;
    ctx.progress.advance = (n: number) => {
      advance(n);
      if (++calls === 1) ac.abort();
    };
    await assertRejects(() => seedModels(ctx, plan), InterruptedError);
    assertEquals(await ls(e.models), []);

    // A killed run leaves staging folders behind: cleanStaging removes only those.
    const dead = `${STAGING_PREFIX}big-999999999`;
    await Deno.mkdir(`${e.models}/${dead}/sub`, { recursive: true });
    await Deno.writeTextFile(`${e.models}/${dead}/sub/part`, "x");
    await Deno.mkdir(`${e.models}/keep`);
    await Deno.mkdir(e.hf, { recursive: true });
    await Deno.mkdir(`${e.hf}/${STAGING_PREFIX}hf-cache-999999999`);
    const removed = await cleanStaging(e.models, e.hf);
    assertEquals(removed.length, 2);
    assertEquals(await ls(e.models), ["keep"]);
    assertEquals(await ls(e.hf), []);
  });
});

Deno.test("a split GGUF set with a missing part is not installed", async () => {
  await withEnv(async (e) => {
    const expected = await bundleFolder(e, "llama", {
      "llama-00001-of-00003.gguf": "a",
      "llama-00003-of-00003.gguf": "c",
    });
    const { plan, result } = await seed(e, [folder("llama")], expected);
    assertEquals(plan.items[0].action, "incomplete");
    assertEquals(result.models[0].verdict, "incomplete");
    assertEquals(result.incomplete, 1);
    assertMatch(result.models[0].warnings.join(), /lacks part 2 of 3/);
    assertEquals(await ls(e.models), []);
  });
});

Deno.test("--link hardlinks the bundle's files (same inode) after verifying them", async () => {
  await withEnv(async (e) => {
    const expected = await bundleFolder(e, "tiny", HF);
    const records: VerifiedModel[] = [];
    const { result } = await seed(e, [folder("tiny")], expected, {
      link: true,
      onVerified: (m: VerifiedModel) => records.push(m),
    });
    assertEquals(result.models[0].verdict, "linked");
    const a = await Deno.stat(`${e.bundle}/models/tiny/model.safetensors`);
    const b = await Deno.stat(`${e.models}/tiny/model.safetensors`);
    assertEquals(b.ino, a.ino);
    assertEquals(b.nlink, 2);
    // Recorded with the stat after linking (the link count, hence the ctime, changed).
    const rec = records[0].files.find((f) => f.rel === "model.safetensors")!;
    assertEquals([rec.stat.ino, rec.stat.nlink], [b.ino, 2]);
    assertEquals(rec.sha256, expected.get("models/tiny/model.safetensors"));
  });
});

async function writeArchive(e: Env, name: string, entries: TarSpecEntry[]): Promise<string> {
  const data = await gzip(buildTar(entries));
  await Deno.writeFile(`${e.bundle}/${name}`, data);
  return sha256(data);
}

const dir = (name: string): TarSpecEntry => ({ name, type: "5" });

Deno.test("archives: models.tar.gz, model-<id>-files.tar.gz and hf-cache.tar.gz layouts", async (t) => {
  await withEnv(async (e) => {
    const expected = new Map<string, string>();
    await t.step(
      "models.tar.gz: models/<name>/ -> <modelsDir>/<name>/ (PAX and base-256)",
      async () => {
        const longName = `${"d".repeat(60)}/${"f".repeat(60)}.json`;
        expected.set(
          "models.tar.gz",
          await writeArchive(e, "models.tar.gz", [
            dir("models/"),
            dir("models/a/"),
            { name: "models/a/config.json", data: "{}" },
            { name: "models/a/tokenizer.json", data: "{}" },
            { name: "models/a/model.safetensors", data: "w" },
            { name: `models/a/${longName}`, data: "long", pax: true },
            { name: "models/b/m.gguf", data: "gguf" },
            { name: "models/b/same.gguf", type: "1", linkname: "models/b/m.gguf" },
          ]),
        );
        const { plan, result } = await seed(
          e,
          [{ kind: "models-archive", path: "models.tar.gz" }],
          expected,
        );
        assertEquals(plan.items[0].action, "extract");
        assertEquals(result.models.map((m) => [m.name, m.verdict]), [["a", "copied"], [
          "b",
          "copied",
        ]]);
        assertEquals(await Deno.readTextFile(`${e.models}/a/${longName}`), "long");
        assertEquals(await Deno.readTextFile(`${e.models}/b/same.gguf`), "gguf");
        assertEquals(await ls(e.models), ["a", "b"]);
        // Re-run: identical folders are skipped.
        const again = await seed(e, [{ kind: "models-archive", path: "models.tar.gz" }], expected);
        assertEquals(again.result.models.map((m) => m.verdict), ["skipped", "skipped"]);
      },
    );

    await t.step("a base-256 size header is read", async () => {
      const { buildHeader } = await import("../../../test/support/tarbuild.ts");
      const data = new TextEncoder().encode("base256!");
      const tarBytes = new Uint8Array(512 * 4);
      tarBytes.set(buildHeader({ name: "c/w.gguf", size: data.length, base256: true, gnu: true }));
      tarBytes.set(data, 512);
      const gz = await gzip(tarBytes);
      await Deno.writeFile(`${e.bundle}/model-7-files.tar.gz`, gz);
      const { result } = await seed(e, [{
        kind: "model-archive",
        id: "7",
        path: "model-7-files.tar.gz",
      }], new Map([["model-7-files.tar.gz", sha256(gz)]]));
      assertEquals(result.models[0].verdict, "copied");
      assertEquals(await Deno.readTextFile(`${e.models}/c/w.gguf`), "base256!");
    });

    await t.step("model-<id>-files.tar.gz: root = the model folder", async () => {
      expected.set(
        "model-3-files.tar.gz",
        await writeArchive(e, "model-3-files.tar.gz", [
          dir("qwen/"),
          { name: "qwen/q-00001-of-00002.gguf", data: "1" },
          { name: "qwen/q-00002-of-00002.gguf", data: "2" },
        ]),
      );
      const { result } = await seed(e, [{
        kind: "model-archive",
        id: "3",
        path: "model-3-files.tar.gz",
      }], expected);
      assertEquals(result.models.map((m) => [m.name, m.verdict, m.files]), [["qwen", "copied", 2]]);
      assertEquals(await ls(`${e.models}/qwen`), [
        "q-00001-of-00002.gguf",
        "q-00002-of-00002.gguf",
      ]);
    });

    await t.step("model archive with a missing split part: incomplete, not installed", async () => {
      expected.set(
        "model-4-files.tar.gz",
        await writeArchive(e, "model-4-files.tar.gz", [{
          name: "half/h-00002-of-00002.gguf",
          data: "2",
        }]),
      );
      const { result } = await seed(e, [{
        kind: "model-archive",
        id: "4",
        path: "model-4-files.tar.gz",
      }], expected);
      assertEquals(result.models[0].verdict, "incomplete");
      assert(!(await ls(e.models)).includes("half"));
    });

    const repo = "hf-cache/hub/models--org--tiny";
    await t.step("hf-cache.tar.gz: hf-cache/ -> <hfCacheDir>/, snapshot links kept", async () => {
      expected.set(
        "hf-cache.tar.gz",
        await writeArchive(e, "hf-cache.tar.gz", [
          dir("hf-cache/"),
          { name: `${repo}/blobs/abc`, data: "{}" },
          { name: `${repo}/refs/main`, data: "r1" },
          { name: `${repo}/snapshots/r1/config.json`, type: "2", linkname: "../../blobs/abc" },
        ]),
      );
      const { result } = await seed(
        e,
        [{ kind: "hf-cache-archive", path: "hf-cache.tar.gz" }],
        expected,
      );
      assertEquals(result.models.map((m) => [m.name, m.verdict, m.files]), [[
        "hub/models--org--tiny",
        "copied",
        3,
      ]]);
      const t1 = `${e.hf}/hub/models--org--tiny/snapshots/r1/config.json`;
      assertEquals(await Deno.readLink(t1), "../../blobs/abc");
      assertEquals(await Deno.readTextFile(t1), "{}");
      assertEquals((await ls(e.hf)).filter((n) => n.startsWith(".")), []);
    });

    await t.step("hf-cache merge: new files added, identical skipped, different kept", async () => {
      await Deno.writeTextFile(`${e.hf}/hub/models--org--tiny/refs/main`, "MINE");
      expected.set(
        "hf-cache.tar.gz",
        await writeArchive(e, "hf-cache.tar.gz", [
          { name: `${repo}/blobs/abc`, data: "{}" },
          { name: `${repo}/blobs/def`, data: "new" },
          { name: `${repo}/refs/main`, data: "r2" },
          { name: `${repo}/snapshots/r2/model.bin`, type: "2", linkname: "../../blobs/def" },
          { name: "hf-cache/hub/models--org--two/blobs/x", data: "x" },
        ]),
      );
      const { result } = await seed(
        e,
        [{ kind: "hf-cache-archive", path: "hf-cache.tar.gz" }],
        expected,
      );
      assertEquals(result.models.map((m) => [m.name, m.verdict]), [
        ["hub/models--org--tiny", "conflict"],
        ["hub/models--org--two", "copied"],
      ]);
      assertEquals(await Deno.readTextFile(`${e.hf}/hub/models--org--tiny/refs/main`), "MINE");
      assertEquals(await Deno.readTextFile(`${e.hf}/hub/models--org--tiny/blobs/def`), "new");
      assertEquals(
        await Deno.readTextFile(`${e.hf}/hub/models--org--tiny/snapshots/r2/model.bin`),
        "new",
      );
      assertEquals(await Deno.readTextFile(`${e.hf}/hub/models--org--two/blobs/x`), "x");
      assertEquals((await ls(e.hf)).filter((n) => n.startsWith(".")), []);
    });

    await t.step("an archive digest mismatch installs nothing", async () => {
      await writeArchive(e, "model-9-files.tar.gz", [{ name: "nine/m.gguf", data: "9" }]);
      const err = await assertRejects(
        () =>
          seed(
            e,
            [{ kind: "model-archive", id: "9", path: "model-9-files.tar.gz" }],
            new Map([["model-9-files.tar.gz", "f".repeat(64)]]),
          ),
        InstallError,
        /sha256 of "model-9-files\.tar\.gz" is/,
      );
      assertEquals(err.exitCode, 4);
      assert(!(await ls(e.models)).includes("nine"));
      assertEquals((await ls(e.models)).filter((n) => n.startsWith(".")), []);
    });
  });
});

Deno.test("hostile archives are refused whole and write nothing outside", async (t) => {
  const cases: [string, TarSpecEntry[], RegExp][] = [
    ["absolute path", [{ name: "/tmp/cit-evil", data: "x" }], /is an absolute path/],
    [
      "dot-dot",
      [{ name: "models/a/ok", data: "x" }, { name: "models/../x", data: "x" }],
      /\.\." segment/,
    ],
    [
      "symlink to /etc",
      [{ name: "models/a/etc", type: "2", linkname: "/etc" }],
      /symbolic link to "\/etc"/,
    ],
    [
      "symlink up and out",
      [{ name: "models/a/up", type: "2", linkname: "../../../x" }],
      /outside the archive/,
    ],
    ["write through a symlink", [
      { name: "models/a/l", type: "2", linkname: "." },
      { name: "models/a/l/f", data: "x" },
    ], /through a symbolic link/],
    ["link chain escape", [
      { name: "models/a/b", type: "2", linkname: "c/.." },
      { name: "models/a/c", type: "2", linkname: ".." },
    ], /outside the archive/],
    [
      "hardlink outside",
      [{ name: "models/a/h", type: "1", linkname: "../../etc/passwd" }],
      /hard link/,
    ],
    [
      "hardlink absolute",
      [{ name: "models/a/h", type: "1", linkname: "/etc/passwd" }],
      /hard link/,
    ],
    ["char device", [{ name: "models/a/tty", type: "3" }], /character-device entry/],
    ["fifo", [{ name: "models/a/p", type: "6" }], /fifo entry/],
    ["outside the root folder", [{ name: "other/a/x", data: "x" }], /outside the archive's root/],
    // Fuzz finding: a directory entry with data made tar-stream wait forever.
    [
      "fuzz finding: a directory entry that carries data",
      [{ name: "models/a/ok", data: "x" }, {
        name: "models/a/",
        type: "5",
        data: "other",
        withData: true,
      }],
      /carries 5 bytes of data/,
    ],
    // Issue 10 item 6: a link must stay inside the model folder being installed.
    [
      "issue 10: symlink to the archive root",
      [{ name: "models/a/ok", data: "x" }, { name: "models/a/x", type: "2", linkname: ".." }],
      /outside its model folder/,
    ],
    [
      "issue 10: symlink into a sibling model",
      [
        { name: "models/b/w", data: "x" },
        { name: "models/a/ok", data: "x" },
        { name: "models/a/x", type: "2", linkname: "../b/w" },
      ],
      /outside its model folder/,
    ],
    [
      "issue 10: hard link into a sibling model",
      [
        { name: "models/b/w", data: "x" },
        { name: "models/a/ok", data: "x" },
        { name: "models/a/h", type: "1", linkname: "models/b/w" },
      ],
      /outside its model folder/,
    ],
  ];
  for (const [label, entries, re] of cases) {
    await t.step(label, async () => {
      await withEnv(async (e) => {
        const digest = await writeArchive(e, "models.tar.gz", entries);
        const err = await assertRejects(
          () =>
            seed(
              e,
              [{ kind: "models-archive", path: "models.tar.gz" }],
              new Map([["models.tar.gz", digest]]),
            ),
          InstallError,
          re,
        );
        assertEquals(err.exitCode, 4);
        assertEquals(await ls(e.models), []);
        assertEquals(await ls(e.root), ["bundle", "var"]);
        assertEquals(await ls(`${e.root}/var`), ["models"]);
      });
    });
  }
  await t.step("nothing was written at the absolute path", async () => {
    assertEquals(await ls("/tmp").then((l) => l.includes("cit-evil")), false);
  });
});
