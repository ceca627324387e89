/**
 * Issue 10 regressions: crafted image tars must cost work linear in their size, fail with our own
 * integrity error (never a TypeError), and stop when the run is interrupted.
 */
import assert from "node:assert/strict";
import { InstallError, InterruptedError } from "../errors.ts";
import { parsePaxRecords, readTarIndex, TarFormatError } from "./tarindex.ts";
import { buildTar, dockerSaveTar, sha256, type TarSpecEntry } from "../../test/support/tarbuild.ts";

const enc = new TextEncoder();

async function tmpTar(data: Uint8Array): Promise<string> {
  const p = await Deno.makeTempFile({ prefix: "cit-hostile-", suffix: ".tar" });
  await Deno.writeFile(p, data);
  return p;
}

/** An OCI tar (no docker manifest.json) from raw blobs and an index document. */
function ociTar(blobs: (string | Uint8Array)[], index: unknown): Uint8Array {
  const entries: TarSpecEntry[] = blobs.map((b) => ({
    name: `blobs/sha256/${sha256(b)}`,
    data: b,
  }));
  entries.push({ name: "oci-layout", data: '{"imageLayoutVersion":"1.0.0"}' });
  entries.push({ name: "index.json", data: JSON.stringify(index) });
  return buildTar(entries);
}

const desc = (b: string, annotations?: unknown) => ({
  mediaType: "application/vnd.oci.image.index.v1+json",
  digest: `sha256:${sha256(b)}`,
  size: b.length,
  ...(annotations ? { annotations } : {}),
});

/** One image (config + manifest blobs) with `layers` layers and `diffIds` diff IDs in its config. */
function image(layers: number, diffIds = layers) {
  const layerBlobs = Array.from({ length: layers }, (_, i) => `layer-${i}`);
  const config = JSON.stringify({
    rootfs: {
      type: "layers",
      diff_ids: Array.from({ length: diffIds }, (_, i) => `sha256:${sha256(`layer-${i}`)}`),
    },
    config: { Env: ["A=1"] },
  });
  const manifest = JSON.stringify({
    schemaVersion: 2,
    config: { digest: `sha256:${sha256(config)}` },
    layers: layerBlobs.map((l) => ({ digest: `sha256:${sha256(l)}` })),
  });
  return { blobs: [...layerBlobs, config, manifest], manifest };
}

async function rejectsOurs(p: Promise<unknown>, re: RegExp) {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof InstallError, `expected our InstallError, got ${e}`);
    assert.equal(e.exitCode, 4);
    assert.match(e.message, re);
    return true;
  });
}

Deno.test("issue 10: a nested OCI index listing k copies of each child reads each blob once", async () => {
  const img = image(1);
  const blobs: string[] = [...img.blobs];
  let child = img.manifest;
  // 4 nested indexes, each listing its child 8 times: 8^5 = 32768 visits without memoizing.
  for (let level = 0; level < 4; level++) {
    const doc = JSON.stringify({ schemaVersion: 2, manifests: Array(8).fill(desc(child)) });
    blobs.push(doc);
    child = doc;
  }
  const top = {
    schemaVersion: 2,
    manifests: Array(8).fill(desc(child, { "io.containerd.image.name": "docker.io/x/y:1" })),
  };
  const path = await tmpTar(ociTar(blobs, top));
  try {
    const stats = { jsonReads: 0 };
    const idx = await readTarIndex(path, { stats });
    assert.deepEqual(idx.images.map((i) => i.repoTags), [["x/y:1"]]);
    // index.json + 4 indexes + 1 manifest + 1 config.
    assert.equal(stats.jsonReads, 7);
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("issue 10: an OCI index over the descriptor cap is refused with the cap named", async () => {
  const img = image(1);
  const many = Array.from(
    { length: 10_001 },
    (_, i) => desc(img.manifest, { "io.containerd.image.name": `r/x:${i}` }),
  );
  const path = await tmpTar(ociTar(img.blobs, { schemaVersion: 2, manifests: many }));
  try {
    await rejectsOurs(readTarIndex(path), /descriptor cap/);
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("issue 10: a legacy manifest.json with many entries sharing one config reads it once", async () => {
  const save = dockerSaveTar([{ repoTags: ["a/b:1"], layers: ["l1"] }], "legacy");
  const m = save.images[0];
  const manifest = Array.from({ length: 200 }, (_, i) => ({
    Config: `${sha256(m.configBytes)}.json`,
    RepoTags: [`a/b:${i}`],
    Layers: m.layerPaths,
  }));
  const tar = buildTar([
    { name: m.layerPaths[0], data: "l1" },
    { name: `${sha256(m.configBytes)}.json`, data: m.configBytes },
    { name: "manifest.json", data: JSON.stringify(manifest) },
  ]);
  const path = await tmpTar(tar);
  try {
    const stats = { jsonReads: 0 };
    const idx = await readTarIndex(path, { stats });
    assert.equal(idx.images.length, 200);
    assert.equal(stats.jsonReads, 2); // manifest.json + the config, once
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("issue 10: PAX length fields are parsed strictly", async (t) => {
  await t.step("unbounded leading zeros are refused", () => {
    // 13 digits, the record is 18 bytes long: it used to parse.
    assert.throws(() => parsePaxRecords(enc.encode("0000000000018 a=b\n")), TarFormatError);
  });
  await t.step("a record that does not end with a newline is refused", () => {
    assert.throws(() => parsePaxRecords(enc.encode("7 a=bcd")), TarFormatError);
  });
  await t.step("a length that ends before its own field is refused", () => {
    assert.throws(() => parsePaxRecords(enc.encode("1 a=b\n")), TarFormatError);
  });
  await t.step("1 MB of zeros with a short length is refused in one pass", () => {
    const data = enc.encode("0".repeat(1_000_000) + "3 \n");
    assert.throws(() => parsePaxRecords(data), /bad PAX header record/);
  });
  await t.step("a key from the file cannot reach Object.prototype", () => {
    const r = parsePaxRecords(enc.encode("17 __proto__=x=1\n"));
    assert.equal(Object.getPrototypeOf(r), null);
    assert.equal(r["__proto__"], "x=1");
  });
  await t.step("valid records still parse", () => {
    assert.deepEqual({ ...parsePaxRecords(enc.encode("11 path=ab\n10 size=5\n")) }, {
      path: "ab",
      size: "5",
    });
  });
});

Deno.test("issue 10: the tar reader stops when the run is interrupted", async () => {
  const save = dockerSaveTar([{ repoTags: ["a/b:1"], layers: ["l1", "l2"] }], "oci");
  const path = await tmpTar(save.tar);
  try {
    const ac = new AbortController();
    ac.abort();
    await assert.rejects(readTarIndex(path, { signal: ac.signal }), InterruptedError);
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("issue 10: hostile OCI documents fail with our integrity error", async (t) => {
  const img = image(2);
  const cases: { name: string; blobs: string[]; index: unknown; re: RegExp }[] = [
    {
      name: "a blob holding null",
      blobs: ["null"],
      index: { manifests: [desc("null")] },
      re: /is not a JSON object/,
    },
    {
      name: "index.json holding null",
      blobs: [],
      index: null,
      re: /index\.json is not a JSON object/,
    },
    {
      name: "a manifest whose config is null",
      blobs: ['{"config":null,"layers":[]}'],
      index: { manifests: [desc('{"config":null,"layers":[]}')] },
      re: /neither an image manifest nor an index/,
    },
    {
      name: "a non-string io.containerd.image.name annotation",
      blobs: img.blobs,
      index: { manifests: [desc(img.manifest, { "io.containerd.image.name": 7 })] },
      re: /annotation "io\.containerd\.image\.name" is not a string/,
    },
    {
      name: "a ref with whitespace",
      blobs: img.blobs,
      index: { manifests: [desc(img.manifest, { "io.containerd.image.name": "a/b:1 evil" })] },
      re: /is not a valid reference/,
    },
    {
      name: "a layer count that differs from the config's diff_ids",
      blobs: image(2, 1).blobs,
      index: { manifests: [desc(image(2, 1).manifest)] },
      re: /lists 1 layers, .* 2/,
    },
  ];
  for (const c of cases) {
    await t.step(c.name, async () => {
      const path = await tmpTar(ociTar(c.blobs, c.index));
      try {
        await rejectsOurs(readTarIndex(path), c.re);
      } finally {
        await Deno.remove(path);
      }
    });
  }
  await t.step("a legacy RepoTag with a newline", async () => {
    const save = dockerSaveTar([{ repoTags: ["a/b:1\nx"], layers: ["l1"] }], "legacy");
    const path = await tmpTar(save.tar);
    try {
      await rejectsOurs(readTarIndex(path), /is not a valid reference/);
    } finally {
      await Deno.remove(path);
    }
  });
});
