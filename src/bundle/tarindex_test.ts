import assert from "node:assert/strict";
import { InstallError } from "../errors.ts";
import {
  parseNumericField,
  parsePaxRecords,
  parseTarHeader,
  readTarIndex,
  resolveTarRefs,
  tarEntries,
  TarFormatError,
} from "./tarindex.ts";
import { buildHeader, buildTar, dockerSaveTar, gzip } from "../../test/support/tarbuild.ts";

async function tmpFile(data: Uint8Array, suffix = ".tar"): Promise<string> {
  const p = await Deno.makeTempFile({ prefix: "cit-tarindex-", suffix });
  await Deno.writeFile(p, data);
  return p;
}

async function rejectsIntegrity(p: Promise<unknown>, re: RegExp) {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof InstallError, `expected InstallError, got ${e}`);
    assert.equal(e.exitCode, 4);
    assert.match(e.message, re);
    return true;
  });
}

Deno.test("parseTarHeader() decodes fields", async (t) => {
  await t.step("plain ustar file", () => {
    const h = parseTarHeader(buildHeader({ name: "a/b.json", size: 1234 }));
    assert.deepEqual(h, {
      name: "a/b.json",
      size: 1234,
      typeflag: "0",
      linkname: "",
      format: "ustar",
    });
  });
  await t.step("ustar prefix is joined", () => {
    const h = parseTarHeader(buildHeader({ name: "layer.tar", prefix: "deep/dir", size: 1 }));
    assert.equal(h?.name, "deep/dir/layer.tar");
  });
  await t.step("GNU header ignores the prefix area", () => {
    const h = parseTarHeader(buildHeader({ name: "x", size: 0, gnu: true }));
    assert.equal(h?.format, "gnu");
    assert.equal(h?.name, "x");
  });
  await t.step("symlink keeps its target", () => {
    const h = parseTarHeader(buildHeader({ name: "l", size: 0, type: "2", linkname: "../t" }));
    assert.equal(h?.typeflag, "2");
    assert.equal(h?.linkname, "../t");
  });
  await t.step("base-256 size over 8 GiB (a 100 GB GGUF)", () => {
    const size = 100 * 1024 ** 3 + 7;
    const h = parseTarHeader(buildHeader({ name: "big.gguf", size, base256: true }));
    assert.equal(h?.size, size);
  });
  await t.step("base-256 of a small size", () => {
    const h = parseTarHeader(buildHeader({ name: "s", size: 513, base256: true }));
    assert.equal(h?.size, 513);
  });
  await t.step("zero block is the end", () => {
    assert.equal(parseTarHeader(new Uint8Array(512)), null);
  });
  await t.step("bad checksum is rejected", () => {
    const b = buildHeader({ name: "a", size: 1 });
    b[0] = "b".charCodeAt(0);
    assert.throws(() => parseTarHeader(b), TarFormatError);
  });
  await t.step("garbage is rejected", () => {
    const b = new TextEncoder().encode("hello world ".repeat(50)).subarray(0, 512);
    assert.throws(() => parseTarHeader(b), /checksum|octal/);
  });
});

Deno.test("parseNumericField() reads octal with spaces and NULs", () => {
  const b = new TextEncoder().encode(" 0000644 \0");
  assert.equal(parseNumericField(b, 0, b.length), 0o644);
});

Deno.test("parsePaxRecords() reads records", () => {
  const text = "28 path=some/very/long/name\n20 size=12345678901\n";
  const r = parsePaxRecords(new TextEncoder().encode(text));
  assert.deepEqual({ ...r }, { path: "some/very/long/name", size: "12345678901" });
});

Deno.test("tarEntries() lists entries with data offsets", async (t) => {
  const longName = "blobs/sha256/" + "a".repeat(120);
  const tar = buildTar([
    { name: "dir/", type: "5" },
    { name: "dir/f.txt", data: "hello" },
    { name: longName, data: "pax", pax: true },
    { name: "gnu/" + "b".repeat(110), data: "gnu!", gnuLongName: true },
    { name: "link", type: "2", linkname: "dir/f.txt" },
  ]);
  const path = await tmpFile(tar);
  try {
    const entries = await tarEntries(path);
    await t.step("names, types and sizes", () => {
      assert.deepEqual(
        entries.map((e) => [e.name, e.type, e.size]),
        [
          ["dir", "directory", 0],
          ["dir/f.txt", "file", 5],
          [longName, "file", 3],
          ["gnu/" + "b".repeat(110), "file", 4],
          ["link", "symlink", 0],
        ],
      );
    });
    await t.step("offsets point at the data", () => {
      const f = entries[1];
      assert.equal(new TextDecoder().decode(tar.subarray(f.offset, f.offset + f.size)), "hello");
      const p = entries[2];
      assert.equal(new TextDecoder().decode(tar.subarray(p.offset, p.offset + p.size)), "pax");
    });
    await t.step("gzip gives the same list", async () => {
      const gz = await tmpFile(await gzip(tar), ".tar.gz");
      try {
        assert.deepEqual(await tarEntries(gz), entries);
      } finally {
        await Deno.remove(gz);
      }
    });
  } finally {
    await Deno.remove(path);
  }
});

const IMAGES = [
  {
    repoTags: ["postgres:16"],
    layers: ["layer-one", "layer-two"],
    env: ["PATH=/usr/bin", "PG_MAJOR=16"],
  },
  {
    repoTags: ["vllm/vllm-openai:v0.6.3"],
    layers: ["layer-one", "vllm-layer"],
    env: ["NVIDIA_REQUIRE_CUDA=cuda>=12.4 brand=tesla"],
  },
];

Deno.test("readTarIndex() reads docker save tars", async (t) => {
  const cases: {
    name: string;
    layout: "legacy" | "oci";
    gz?: boolean;
    dockerManifest?: boolean;
    symlinks?: boolean;
  }[] = [
    { name: "legacy layout", layout: "legacy" },
    { name: "legacy layout with symlinked duplicate layers", layout: "legacy", symlinks: true },
    { name: "legacy layout, gzip", layout: "legacy", gz: true },
    { name: "OCI layout with docker manifest.json", layout: "oci" },
    { name: "OCI layout without manifest.json", layout: "oci", dockerManifest: false },
    {
      name: "OCI layout without manifest.json, gzip",
      layout: "oci",
      dockerManifest: false,
      gz: true,
    },
  ];
  for (const c of cases) {
    await t.step(c.name, async () => {
      const save = dockerSaveTar(IMAGES, c.layout, {
        dockerManifest: c.dockerManifest,
        symlinkDuplicateLayers: c.symlinks,
      });
      const path = await tmpFile(c.gz ? await gzip(save.tar) : save.tar, c.gz ? ".tgz" : ".tar");
      try {
        const idx = await readTarIndex(path);
        assert.equal(idx.layout, c.layout);
        assert.equal(idx.compressed, !!c.gz);
        assert.equal(idx.images.length, 2);
        const pg = idx.images.find((i) => i.repoTags.includes("postgres:16"));
        const vllm = idx.images.find((i) => i.repoTags.includes("vllm/vllm-openai:v0.6.3"));
        assert.ok(pg && vllm, JSON.stringify(idx.images.map((i) => i.repoTags)));
        assert.equal(pg.imageId, save.images[0].imageId);
        assert.equal(vllm.imageId, save.images[1].imageId);
        assert.deepEqual(pg.diffIds, save.images[0].diffIds);
        assert.deepEqual(vllm.layerPaths, save.images[1].layerPaths);
        assert.deepEqual(vllm.env, ["NVIDIA_REQUIRE_CUDA=cuda>=12.4 brand=tesla"]);
        assert.deepEqual(pg.env, ["PATH=/usr/bin", "PG_MAJOR=16"]);
        // Layer sizes are known by path, symlinks resolved to their target.
        for (const p of vllm.layerPaths) assert.ok(idx.entrySizes[p] > 0, p);
        assert.equal(idx.entrySizes[vllm.layerPaths[1]], "vllm-layer".length);
        assert.deepEqual(resolveTarRefs(idx).sort(), ["postgres:16", "vllm/vllm-openai:v0.6.3"]);
      } finally {
        await Deno.remove(path);
      }
    });
  }

  await t.step("an image with a null Config (docker import) has no env", async () => {
    const save = dockerSaveTar([{ repoTags: [], layers: ["x"], nullConfig: true }], "legacy");
    const path = await tmpFile(save.tar);
    try {
      const idx = await readTarIndex(path);
      assert.deepEqual(idx.images[0].env, []);
      assert.deepEqual(idx.images[0].repoTags, []);
      assert.equal(idx.images[0].imageId, save.images[0].imageId);
      assert.deepEqual(resolveTarRefs(idx), []);
    } finally {
      await Deno.remove(path);
    }
  });
});

Deno.test("readTarIndex() rejects broken tars with integrity errors", async (t) => {
  const save = dockerSaveTar(IMAGES, "legacy");
  const cases: { name: string; data: () => Promise<Uint8Array> | Uint8Array; re: RegExp }[] = [
    {
      name: "truncated in the middle of a layer",
      data: () => save.tar.subarray(0, 1024 + 100),
      re: /truncated/,
    },
    {
      name: "truncated at an entry boundary (no end marker)",
      data: () => save.tar.subarray(0, 1024),
      re: /truncated/,
    },
    {
      name: "not a tar",
      data: () => new TextEncoder().encode("this is not a tar ".repeat(100)),
      re: /checksum|octal/,
    },
    { name: "empty file", data: () => new Uint8Array(0), re: /truncated/ },
    {
      name: "truncated gzip",
      data: async () => (await gzip(save.tar)).subarray(0, 200),
      re: /gzip|truncated/,
    },
    {
      name: "a tar without manifest.json or index.json",
      data: () => buildTar([{ name: "hello.txt", data: "hi" }]),
      re: /not a `docker save` tar/,
    },
    {
      name: "bad manifest.json",
      data: () => buildTar([{ name: "manifest.json", data: '[{"Config": 3}]' }]),
      re: /bad manifest\.json: 0\.Config/,
    },
    {
      name: "manifest.json listing a missing layer",
      data: () =>
        buildTar([
          { name: "c.json", data: '{"rootfs":{"diff_ids":["sha256:aa"]}}' },
          { name: "manifest.json", data: '[{"Config":"c.json","Layers":["l/layer.tar"]}]' },
        ]),
      re: /layer "l\/layer.tar" is listed but not in the tar/,
    },
  ];
  for (const c of cases) {
    await t.step(c.name, async () => {
      const path = await tmpFile(await c.data());
      try {
        await rejectsIntegrity(readTarIndex(path), c.re);
        await rejectsIntegrity(readTarIndex(path), new RegExp(path.replaceAll(".", "\\.")));
      } finally {
        await Deno.remove(path);
      }
    });
  }
});

Deno.test("readTarIndex() skips data by seeking (a sparse 9 GiB layer costs no reads)", async () => {
  // A 9 GiB entry written as a header plus a sparse hole: base-256 size, no allocation.
  const size = 9 * 1024 ** 3;
  const save = dockerSaveTar([{ repoTags: ["big:1"], layers: ["small"] }], "legacy");
  const path = await Deno.makeTempFile({ prefix: "cit-tarindex-", suffix: ".tar" });
  try {
    const f = await Deno.open(path, { write: true });
    await f.write(buildHeader({ name: "huge/blob.bin", size, base256: true }));
    await f.truncate(512 + size); // sparse
    await f.seek(0, Deno.SeekMode.End);
    await f.write(save.tar);
    f.close();
    // Bounded work: the bytes this process read (/proc/self/io rchar) while indexing a 9 GiB tar.
    const rchar = () => Number(/^rchar: (\d+)$/m.exec(Deno.readTextFileSync("/proc/self/io"))![1]);
    const read0 = rchar();
    const idx = await readTarIndex(path);
    const read = rchar() - read0;
    assert.ok(read < 1024 * 1024, `read ${read} bytes of a ${size} B tar`);
    assert.equal(idx.entrySizes["huge/blob.bin"], size);
    assert.equal(idx.images[0].imageId, save.images[0].imageId);
  } finally {
    await Deno.remove(path);
  }
});
