/**
 * Fuzz targets: the image-tar reader (legacy and OCI layouts, plain and gzip: src/bundle/tarindex.ts)
 * and the layer-blanking stream (src/bundle/layerskip.ts). Cases are `docker save` tars built by
 * test/support/tarbuild.ts, mutated entry by entry (JSON documents, names with `..` or absolute,
 * links, devices, duplicated entries, nested OCI indexes, PAX records, base-256 sizes) and byte
 * by byte.
 */
import {
  parsePaxRecords,
  parseTarHeader,
  readTarIndex,
  tarEntries,
} from "../../src/bundle/tarindex.ts";
import { skipLayersTransform, type SkipStats } from "../../src/bundle/layerskip.ts";
import { buildHeader, dockerSaveTar, gzip, sha256 } from "../support/tarbuild.ts";
import {
  bytes,
  mutate,
  mutateJson,
  prop,
  PropertyFailure,
  type Rng,
  type Target,
  utf8,
} from "./harness.ts";

const BLOCK = 512;

export interface Ent {
  name: string;
  type: string;
  data: Uint8Array;
  linkname?: string;
  /** Header extras: a PAX record before it, a GNU long name, a base-256 size. */
  pax?: Uint8Array;
  longName?: boolean;
  base256?: boolean;
}

/** Decodes a tar (from our builder) into entries. */
export function decode(tar: Uint8Array): Ent[] {
  const out: Ent[] = [];
  let pos = 0;
  while (pos + BLOCK <= tar.length) {
    const h = parseTarHeader(tar.subarray(pos, pos + BLOCK));
    if (!h) break;
    pos += BLOCK;
    const size = h.typeflag === "0" ? h.size : 0;
    out.push({
      name: h.name,
      type: h.typeflag,
      data: tar.slice(pos, pos + size),
      linkname: h.linkname || undefined,
    });
    pos += Math.ceil(size / BLOCK) * BLOCK;
  }
  return out;
}

const pad = (n: number) => new Uint8Array((BLOCK - (n % BLOCK)) % BLOCK);

/** Encodes entries (any type may carry data: PAX and GNU records are written by hand here). */
export function encode(ents: Ent[], end = true): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const e of ents) {
    if (e.pax) {
      parts.push(
        buildHeader({ name: "PaxHeaders/x", size: e.pax.length, type: "x" }),
        e.pax,
        pad(e.pax.length),
      );
    }
    let name = e.name;
    if (e.longName) {
      const rec = bytes(e.name + "\0");
      parts.push(
        buildHeader({ name: "././@LongLink", size: rec.length, type: "L", gnu: true }),
        rec,
        pad(rec.length),
      );
      name = e.name.slice(0, 99);
    }
    parts.push(
      buildHeader({
        name: new TextEncoder().encode(name).length > 100 ? name.slice(0, 99) : name,
        size: e.data.length,
        type: e.type,
        linkname: e.linkname,
        base256: e.base256,
        gnu: e.longName,
      }),
      e.data,
      pad(e.data.length),
    );
  }
  if (end) parts.push(new Uint8Array(BLOCK * 2));
  const n = parts.reduce((s, p) => s + p.length, 0);
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len = String(len).length + body.length;
  return `${len}${body}`;
}

const SEEDS: Record<"legacy" | "oci" | "skopeo", Ent[]> = (() => {
  const imgs = [
    {
      repoTags: ["vllm/vllm-openai:v0.6.3"],
      layers: ["base layer", "vllm layer"],
      env: ["CUDA_VERSION=12.4.1"],
    },
    {
      repoTags: ["postgres:16", "docker.io/library/postgres:16.4"],
      layers: ["base layer", "pg layer"],
    },
  ];
  return {
    legacy: decode(dockerSaveTar(imgs, "legacy", { symlinkDuplicateLayers: true }).tar),
    oci: decode(dockerSaveTar(imgs, "oci").tar),
    skopeo: decode(dockerSaveTar(imgs, "oci", { dockerManifest: false }).tar),
  };
})();

const NAMES = [
  "../x",
  "/etc/passwd",
  "a/../../b",
  "./manifest.json",
  "blobs/sha256/../../index.json",
  "x".repeat(300),
  "a\nb",
  "manifest.json/",
];

/** A nested OCI index bomb: `k` copies of the child at each of `depth` levels. */
function indexBomb(rng: Rng, ents: Ent[]): void {
  const idx = ents.find((e) => e.name === "index.json");
  if (!idx) return;
  let child;
  try {
    child = JSON.parse(utf8(idx.data))?.manifests?.[0];
  } catch {
    return; // already mutated into something else
  }
  if (!child) return;
  const k = rng.pick([3, 10, 40]);
  for (let level = 0; level < rng.pick([2, 5, 7]); level++) {
    const doc = bytes(JSON.stringify({ schemaVersion: 2, manifests: Array(k).fill(child) }));
    const hex = sha256(doc);
    ents.push({ name: `blobs/sha256/${hex}`, type: "0", data: doc });
    child = {
      mediaType: "application/vnd.oci.image.index.v1+json",
      digest: `sha256:${hex}`,
      size: doc.length,
    };
  }
  idx.data = bytes(JSON.stringify({ schemaVersion: 2, manifests: Array(k).fill(child) }));
}

/** One entry-level mutation. */
function mutateEntries(rng: Rng, ents: Ent[]): void {
  const e = rng.pick(ents);
  switch (rng.int(11)) {
    case 0:
    case 1: { // a JSON document
      const json = ents.filter((x) => x.data.length && x.data[0] === 0x7b || x.data[0] === 0x5b);
      if (json.length) {
        const j = rng.pick(json);
        j.data = mutateJson(rng, j.data);
      }
      break;
    }
    case 2:
      e.name = rng.pick(NAMES);
      break;
    case 3:
      ents.push({
        name: rng.pick(["l", "blobs/sha256/" + "0".repeat(64), e.name]),
        type: rng.pick(["1", "2"]),
        data: new Uint8Array(),
        linkname: rng.pick([e.name, "../../etc/passwd", "/etc/passwd", "l", "."]),
      });
      break;
    case 4:
      ents.splice(rng.int(ents.length), 0, {
        name: rng.pick(["dev", e.name]),
        type: rng.pick(["3", "4", "6", "g", "V", "\0"]),
        data: new Uint8Array(),
      });
      break;
    case 5:
      ents.push({ ...e });
      break;
    case 6:
      indexBomb(rng, ents);
      break;
    case 7: { // PAX records: good, bad lengths, huge sizes, leading zeros
      const recs = rng.pick([
        paxRecord("path", e.name + "-pax"),
        paxRecord("size", rng.pick(["99999999999999999999", "-1", "1e3", String(e.data.length)])),
        "0".repeat(rng.pick([10, 100_000])) + "3 \n",
        "9 path=x\n",
        paxRecord("linkpath", "../../x"),
        "",
      ]);
      e.pax = bytes(recs);
      break;
    }
    case 8:
      e.base256 = true;
      break;
    case 9:
      e.longName = true;
      e.name = e.name + "/" + "n".repeat(rng.pick([50, 200]));
      break;
    default:
      ents.splice(rng.int(ents.length), 1);
  }
}

function genTar(rng: Rng, layout: "legacy" | "oci" | "skopeo"): Uint8Array {
  const ents = SEEDS[layout].map((e) => ({ ...e }));
  for (let i = 0, n = 1 + rng.int(3); i < n; i++) mutateEntries(rng, ents);
  const tar = encode(ents, !rng.chance(0.05));
  return rng.chance(0.25) ? mutate(rng, tar, 2) : tar;
}

async function withTmp<T>(data: Uint8Array, f: (p: string) => Promise<T>): Promise<T> {
  const p = await Deno.makeTempFile({ prefix: "cit-fuzz-tar-" });
  try {
    await Deno.writeFile(p, data);
    return await f(p);
  } finally {
    await Deno.remove(p);
  }
}

/** Properties of an accepted index. */
async function checkIndex(input: Uint8Array) {
  await withTmp(input, async (p) => {
    const stats = { jsonReads: 0 };
    const idx = await readTarIndex(p, { stats });
    for (const img of idx.images) {
      prop(/^sha256:[0-9a-f]{64}$/.test(img.imageId), `image ID ${img.imageId}`);
      prop(img.layerPaths.length === img.diffIds.length, "layer count differs from diff_ids");
      for (const t of img.repoTags) {
        prop(t !== "" && !/[\s\p{Cc}]/u.test(t), `ref ${JSON.stringify(t)}`);
      }
      for (const l of img.layerPaths) prop(l in idx.entrySizes, `layer ${l} has no entry`);
    }
    for (const [n, s] of Object.entries(idx.entrySizes)) {
      prop(Number.isSafeInteger(s) && s >= 0, `size of ${n}: ${s}`);
    }
    // The entry listing agrees with the index on every size.
    const list = await tarEntries(p);
    const byName = new Map(list.map((e) => [e.name, e]));
    // Each JSON document is read at most once: reads never exceed the distinct entries.
    prop(stats.jsonReads <= byName.size, `${stats.jsonReads} JSON reads of ${byName.size} entries`);
    for (const [n, s] of Object.entries(idx.entrySizes)) {
      const e = byName.get(n);
      if (e && e.type === "file") prop(e.size === s, `entry ${n}: ${e.size} vs ${s}`);
    }
  });
}

const TAR_BAD =
  'integrity error (exit 4) naming the tar: "truncated", "bad tar header checksum", ' +
  '"bad PAX header record", "is listed but not in the tar", the descriptor or entry cap; ' +
  "nothing is loaded";
const TAR_PROP = "each JSON blob and config read once (work linear in the tar); layers and " +
  "diff_ids agree in count; refs have no whitespace; sizes are safe integers; the entry listing " +
  "agrees with the index";

export const TAR_TARGETS: Target[] = [
  {
    name: "tar-legacy",
    group: "image tars",
    parser: "readTarIndex (src/bundle/tarindex.ts): legacy `docker save` layout",
    onBadInput: TAR_BAD,
    property: TAR_PROP,
    gen: (rng) => genTar(rng, "legacy"),
    check: checkIndex,
  },
  {
    name: "tar-oci",
    group: "image tars",
    parser:
      "readTarIndex (src/bundle/tarindex.ts): OCI layout, with and without docker's manifest.json",
    onBadInput: TAR_BAD,
    property: TAR_PROP,
    gen: (rng) => genTar(rng, rng.chance(0.5) ? "oci" : "skopeo"),
    check: checkIndex,
  },
  {
    name: "tar-gzip",
    group: "image tars",
    parser: "readTarIndex (src/bundle/tarindex.ts): gzip-compressed tars (streamed once)",
    onBadInput: TAR_BAD + '; bad gzip data is "bad gzip data"',
    property: TAR_PROP,
    weight: 0.5,
    async gen(rng) {
      const z = await gzip(genTar(rng, rng.pick(["legacy", "oci", "skopeo"] as const)));
      return rng.chance(0.2) ? mutate(rng, z, 1) : z;
    },
    check: checkIndex,
  },
  {
    name: "pax-records",
    group: "image tars",
    parser: "parsePaxRecords (src/bundle/tarindex.ts): PAX extended headers",
    onBadInput: '"bad PAX header record" (an integrity error naming the tar)',
    property: "linear time (the length field is at most 9 digits and ends inside its record); " +
      "keys are own properties of a null-prototype map; every record ends with a newline",
    gen(rng) {
      const good = paxRecord("path", "blobs/sha256/" + "a".repeat(64)) +
        paxRecord("size", "12345678901");
      return mutate(rng, bytes(good), 4);
    },
    check(input) {
      const r = parsePaxRecords(input);
      prop(Object.getPrototypeOf(r) === null, "PAX map has a prototype");
      for (const v of Object.values(r)) prop(typeof v === "string", "value");
    },
  },
  {
    name: "layerskip",
    group: "image tars",
    parser:
      "skipLayersTransform (src/bundle/layerskip.ts): the layer-blanking stream of `docker load`",
    onBadInput:
      "passes the rest of the tar on unchanged (stats.gaveUp) and `docker load` judges it",
    property:
      "blanking nothing returns the input byte for byte; when it blanks, every other entry " +
      "keeps its name and size and the output is a tar the index reader lists",
    weight: 0.5,
    gen(rng) {
      const tar = genTar(rng, rng.pick(["legacy", "oci"] as const));
      // The first byte picks what to blank: 0 nothing, else the layers of the seed.
      return new Uint8Array([rng.int(3), ...tar]);
    },
    async check(input) {
      const tar = input.subarray(1);
      const layers = SEEDS.legacy.concat(SEEDS.oci).filter((e) =>
        e.name.endsWith("layer.tar") || (e.name.startsWith("blobs/") && e.data[0] !== 0x7b)
      ).map((e) => e.name);
      const blank = new Set(input[0] === 0 ? [] : input[0] === 1 ? layers.slice(0, 1) : layers);
      const stats: SkipStats = { blanked: [], skippedBytes: 0, gaveUp: false };
      // Uneven chunks: the stream must not depend on chunk boundaries.
      const chunks: Uint8Array[] = [];
      for (let i = 0, step = 1 + (tar.length % 700); i < tar.length; i += step) {
        chunks.push(tar.subarray(i, i + step));
      }
      const src = new ReadableStream<Uint8Array>({
        start(c) {
          for (const ch of chunks) c.enqueue(ch);
          c.close();
        },
      });
      const out = new Uint8Array(
        await new Response(src.pipeThrough(skipLayersTransform(blank, stats))).arrayBuffer(),
      );
      if (blank.size === 0 || stats.blanked.length === 0) {
        prop(
          out.length === tar.length && out.every((b, i) => b === tar[i]),
          "output differs from input",
        );
        return;
      }
      if (stats.gaveUp) return;
      // Only a tar the reader lists has a listing to keep.
      const before = await withTmp(tar, (q) => tarEntries(q)).catch(() => undefined);
      if (!before) return;
      await withTmp(out, async (p) => {
        let after;
        try {
          after = await tarEntries(p);
        } catch (e) {
          throw new PropertyFailure(`blanked output does not list: ${(e as Error).message}`);
        }
        prop(after.length === before.length, "entry count changed");
        after.forEach((a, i) => {
          prop(a.name === before[i].name, `entry ${i} renamed`);
          const blanked = stats.blanked.includes(a.name);
          prop(blanked ? a.size === 0 : a.size === before[i].size, `size of ${a.name}`);
        });
      });
    },
  },
];
