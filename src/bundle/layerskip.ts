/**
 * Layer skipping for fast upgrades.
 *
 * `docker load` (classic image store) never opens a layer whose chain the engine already has: it
 * looks the chain ID up first and only extracts the layer when it is missing. So the stream we
 * feed it may carry those layers EMPTY, while the installer still hashes every byte of the
 * original tar. This saves docker's temporary copy of the tar and its read of the shared layers.
 *
 * Fails closed: a layer blanked by mistake makes `docker load` fail (it checks each extracted
 * layer against its diff ID); it can never load wrong content.
 */
import { createHash } from "node:crypto";
import {
  cString,
  headerChecksum,
  parsePaxRecords,
  parseTarHeader,
  type TarHeader,
} from "./tarindex.ts";

const BLOCK = 512;

/** What a skipLayersTransform did; filled in while the stream runs. */
export interface SkipStats {
  /** Names of the entries sent with their data left out. */
  blanked: string[];
  /** Data bytes (with padding) left out of the output. */
  skippedBytes: number;
  /** Whether the tar could not be parsed at some point and the rest was passed on unchanged. */
  gaveUp: boolean;
}

/** Chain IDs of a layer stack: chainID(0)=diffID(0), chainID(i)=sha256(chainID(i-1) + " " + diffID(i)). */
export function chainIds(diffIds: readonly string[]): string[] {
  const out: string[] = [];
  for (const d of diffIds) {
    if (out.length === 0) {
      out.push(d);
    } else {
      const parent = out[out.length - 1];
      out.push("sha256:" + createHash("sha256").update(`${parent} ${d}`).digest("hex"));
    }
  }
  return out;
}

/**
 * The chain IDs present in the engine, from the `RootFS.Layers` (diff IDs) of every image that
 * `docker image inspect` shows: each prefix of each image's layer list is a present chain.
 */
export function presentChains(layerLists: Iterable<readonly string[]>): Set<string> {
  const set = new Set<string>();
  for (const layers of layerLists) for (const c of chainIds(layers)) set.add(c);
  return set;
}

/** The part of a TarImage that layersToBlank needs. */
export interface LayerStack {
  diffIds: readonly string[];
  layerPaths: readonly string[];
}

const normName = (n: string) => n.replace(/^(\.\/)+/, "");

/**
 * The tar entries that may be sent empty to `docker load`: the layers whose whole chain
 * (diff_ids[0..i]) is present in the engine. `present` is a set of present chain IDs (see
 * presentChains) or a function asked with a chain ID and the layer index.
 *
 * Takes one image or all images of a tar: a diff ID may be stored once and used at several
 * places (docker save links duplicates to one file), so a layer is blanked only when every use
 * of its diff ID, in every image of the tar, has its chain present.
 */
export function layersToBlank(
  images: LayerStack | readonly LayerStack[],
  present: ReadonlySet<string> | ((chainId: string, index: number) => boolean),
): Set<string> {
  const list: readonly LayerStack[] = Array.isArray(images) ? images : [images as LayerStack];
  const has = typeof present === "function"
    ? present
    : (c: string) => (present as ReadonlySet<string>).has(c);
  const ok = new Map<string, boolean>(); // diffId -> every use present
  const paths = new Map<string, Set<string>>(); // diffId -> entry names
  for (const img of list) {
    if (img.diffIds.length !== img.layerPaths.length) {
      throw new Error(
        `layersToBlank: ${img.diffIds.length} diff IDs but ${img.layerPaths.length} layer paths`,
      );
    }
    const chains = chainIds(img.diffIds);
    let prefixPresent = true;
    for (let i = 0; i < chains.length; i++) {
      prefixPresent = prefixPresent && has(chains[i], i);
      const d = img.diffIds[i];
      ok.set(d, (ok.get(d) ?? true) && prefixPresent);
      let s = paths.get(d);
      if (!s) paths.set(d, s = new Set());
      s.add(normName(img.layerPaths[i]));
    }
  }
  const out = new Set<string>();
  for (const [d, good] of ok) if (good) { for (const p of paths.get(d)!) out.add(p); }
  // A path used by a diff ID that must be kept (should not happen: paths are per diff ID).
  for (const [d, good] of ok) if (!good) { for (const p of paths.get(d)!) out.delete(p); }
  return out;
}

// ---- tar header writing (pure); reading is tarindex.ts's one parser ----

const enc = new TextEncoder();

/** Returns a copy of a header with a new size (octal) and a recomputed checksum. */
export function withSize(h: Uint8Array, size: number): Uint8Array {
  const out = h.slice(0, BLOCK);
  const field = size.toString(8).padStart(11, "0") + "\0";
  if (field.length !== 12) throw new Error(`size ${size} does not fit an octal tar field`);
  out.set(enc.encode(field), 124);
  const sum = headerChecksum(out).toString(8).padStart(6, "0") + "\0 ";
  out.set(enc.encode(sum), 148);
  return out;
}

/** One PAX record, `<len> key=value\n`, where `<len>` counts the whole record with itself. */
function paxRecord(key: string, value: string): Uint8Array {
  const body = ` ${key}=${value}\n`;
  const bodyLen = enc.encode(body).length;
  let len = bodyLen + String(bodyLen).length;
  if (String(len).length !== String(bodyLen).length) len = bodyLen + String(len).length;
  return enc.encode(`${len}${body}`);
}

const pad = (n: number) => (BLOCK - (n % BLOCK)) % BLOCK;

/** Entry types whose size field carries no data (as Go's archive/tar, which docker uses, reads them). */
const HEADER_ONLY = new Set(["1", "2", "3", "4", "5", "6"]);
/** Metadata entries that describe the next entry; kept in memory up to this size. */
const META_TYPES = new Set(["x", "L", "K"]);
const MAX_META = 1 << 20;

/**
 * A stream transform that passes a tar through unchanged, except that the regular-file entries
 * named in `blank` (normalised without a leading `./`) are sent with size 0 and no data. It reads
 * ustar, GNU (`L`/`K` long names, base-256 sizes) and PAX (`x` path/size records) headers, on
 * arbitrary chunk boundaries, in constant memory; data is forwarded as subarrays of the input
 * chunks (no copy). A PAX `size` record of a blanked entry is dropped and its header rewritten.
 * Anything it cannot parse is passed on unchanged from there on (stats.gaveUp).
 */
export function skipLayersTransform(
  blank: ReadonlySet<string>,
  stats: SkipStats = { blanked: [], skippedBytes: 0, gaveUp: false },
): TransformStream<Uint8Array, Uint8Array> {
  const want = new Set([...blank].map(normName));
  const header = new Uint8Array(BLOCK);
  let headerFill = 0;
  /** Mode: reading a header; passing or skipping `remaining` bytes; collecting meta data. */
  let mode: "header" | "pass" | "skip" | "meta" | "raw" = "header";
  let remaining = 0;
  // The pending metadata entries for the next entry (kept until its header is read).
  // `data` holds the entry's padding too; `size` is its length without it.
  let pending: { header: Uint8Array; data: Uint8Array; size: number; type: string }[] = [];
  let meta:
    | { header: Uint8Array; data: Uint8Array; fill: number; size: number; type: string }
    | null = null;

  const flushPending = (c: TransformStreamDefaultController<Uint8Array>) => {
    for (const p of pending) {
      c.enqueue(p.header);
      if (p.data.length) c.enqueue(p.data);
    }
    pending = [];
  };

  const giveUp = (c: TransformStreamDefaultController<Uint8Array>, extra?: Uint8Array) => {
    stats.gaveUp = true;
    flushPending(c);
    if (meta) {
      c.enqueue(meta.header);
      if (meta.fill) c.enqueue(meta.data.subarray(0, meta.fill));
      meta = null;
    }
    if (extra && extra.length) c.enqueue(extra);
    mode = "raw";
  };

  /** Handles a complete header block. */
  const onHeader = (c: TransformStreamDefaultController<Uint8Array>, h: Uint8Array) => {
    let hdr: TarHeader | null;
    try {
      hdr = parseTarHeader(h);
    } catch {
      return giveUp(c, h);
    }
    if (hdr === null) {
      // End-of-archive marker (or padding): pass it and everything after it on unchanged.
      flushPending(c);
      c.enqueue(h);
      return;
    }
    const type = hdr.typeflag;
    let size = hdr.size;
    if (META_TYPES.has(type)) {
      if (size > MAX_META) return giveUp(c, h);
      meta = { header: h, data: new Uint8Array(size + pad(size)), fill: 0, size, type };
      mode = "meta";
      remaining = size + pad(size);
      if (remaining === 0) endMeta();
      return;
    }
    // A real entry: work out its name and size from the pending metadata.
    let name = hdr.name;
    let paxSize = false;
    let records: Record<string, string>[] = [];
    try {
      records = pending.map((p) =>
        p.type === "x" ? parsePaxRecords(p.data.subarray(0, p.size)) : {}
      );
    } catch {
      return giveUp(c, h);
    }
    for (const [i, p] of pending.entries()) {
      if (p.type === "L") name = cString(p.data, 0, p.size);
      const r = records[i];
      if (r.path !== undefined) name = r.path;
      if (r.size !== undefined) {
        size = Number(r.size);
        paxSize = true;
        if (!Number.isSafeInteger(size) || size < 0) return giveUp(c, h);
      }
    }
    const dataLen = HEADER_ONLY.has(type) ? 0 : size;
    const isFile = type === "0" || type === "7";
    if (isFile && dataLen > 0 && want.has(normName(name))) {
      if (paxSize) {
        pending = pending.map((p, i) => {
          if (p.type !== "x") return p;
          const kept = Object.entries(records[i]).filter(([k]) => k !== "size").map(([k, v]) =>
            paxRecord(k, v)
          );
          const len = kept.reduce((n, r) => n + r.length, 0);
          const data = new Uint8Array(len + pad(len));
          let o = 0;
          for (const r of kept) data.set(r, o), o += r.length;
          return { header: withSize(p.header, len), data, size: len, type: "x" };
        });
      }
      flushPending(c);
      c.enqueue(withSize(h, 0));
      stats.blanked.push(name);
      stats.skippedBytes += dataLen + pad(dataLen);
      mode = "skip";
      remaining = dataLen + pad(dataLen);
    } else {
      flushPending(c);
      c.enqueue(h);
      mode = "pass";
      remaining = dataLen + pad(dataLen);
    }
    if (remaining === 0) mode = "header";
  };

  /** A metadata entry is complete: hold it (data with its padding) until the next header. */
  const endMeta = () => {
    const m = meta!;
    meta = null;
    pending.push({ header: m.header, data: m.data, size: m.size, type: m.type });
    mode = "header";
  };

  return new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, c) {
      let off = 0;
      while (off < chunk.length) {
        // What is passed on is copied: the writer reuses its buffers once a write settles
        // (skipped bytes, most of an upgrade's, then cost nothing at all).
        if (mode === "raw") {
          c.enqueue(chunk.slice(off));
          return;
        }
        if (mode === "pass" || mode === "skip") {
          const n = Math.min(remaining, chunk.length - off);
          if (mode === "pass") c.enqueue(chunk.slice(off, off + n));
          off += n;
          remaining -= n;
          if (remaining === 0) mode = "header";
          continue;
        }
        if (mode === "meta") {
          const m = meta!;
          const n = Math.min(remaining, chunk.length - off);
          m.data.set(chunk.subarray(off, off + n), m.fill);
          m.fill += n;
          off += n;
          remaining -= n;
          if (remaining === 0) endMeta();
          continue;
        }
        // header
        if (headerFill === 0 && chunk.length - off >= BLOCK) {
          const h = chunk.slice(off, off + BLOCK);
          off += BLOCK;
          onHeader(c, h);
        } else {
          const n = Math.min(BLOCK - headerFill, chunk.length - off);
          header.set(chunk.subarray(off, off + n), headerFill);
          headerFill += n;
          off += n;
          if (headerFill === BLOCK) {
            headerFill = 0;
            onHeader(c, header.slice());
          }
        }
      }
    },
    flush(c) {
      // A truncated tar: pass on what is held so the reader sees the same bytes.
      if (mode !== "raw") {
        flushPending(c);
        if (meta) {
          c.enqueue(meta.header);
          if (meta.fill) c.enqueue(meta.data.subarray(0, meta.fill));
        }
        if (headerFill) c.enqueue(header.slice(0, headerFill));
      }
    },
  });
}
