/**
 * Reads the index of a `docker save` tar (legacy or OCI layout, plain or gzip) without loading
 * it and without holding a layer in memory. A minimal tar header reader of our own: for an
 * uncompressed tar it reads headers only and seeks past the data, so a 20 GB tar takes
 * milliseconds; a gzip tar is streamed once and its data discarded.
 */
import { createHash } from "node:crypto";
import { integrityError, InterruptedError } from "../errors.ts";
import type { TarImage, TarIndex } from "./types.ts";
import { DockerSaveManifestSchema } from "./manifests.ts";
import { formatZodError, normalizeRef } from "./release.ts";

const BLOCK = 512;
/** The most entries (headers) one image tar may have; a real `docker save` has a few hundred. */
export const MAX_TAR_ENTRIES = 1_000_000;
/** The most manifest descriptors an OCI index tree may list in total (duplicates counted). */
export const MAX_OCI_DESCRIPTORS = 10_000;
/** The largest JSON entry (manifest, index, config) read into memory. */
export const MAX_JSON_ENTRY = 16 * 1024 * 1024;
/** In a gzip stream, the most bytes of small JSON-looking blobs kept in memory in total. */
const MAX_CAPTURED_TOTAL = 64 * 1024 * 1024;

/** A tar header, decoded. PAX and GNU long-name records are applied by the reader, not here. */
export interface TarHeader {
  name: string;
  size: number;
  /** The raw type flag: "0" file, "1" hard link, "2" symlink, "5" dir, "x"/"g" PAX, "L"/"K" GNU. */
  typeflag: string;
  linkname: string;
  /** "ustar" (POSIX), "gnu" or "v7". */
  format: "ustar" | "gnu" | "v7";
}

/** A thrown error of the tar reader; readers wrap it in an integrity error naming the file. */
export class TarFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "TarFormatError";
  }
}

export type TarEntryType = "file" | "directory" | "symlink" | "hardlink" | "other";

/** One entry of a tar, as `tarEntries()` lists it. */
export interface TarEntry {
  name: string;
  /** Offset of the entry's data in the (decompressed) tar stream. */
  offset: number;
  size: number;
  type: TarEntryType;
  /** Target of a symlink or hard link. */
  linkname?: string;
}

const dec = new TextDecoder();

/** A NUL-terminated string field of a tar header (or a GNU long-name record). */
export function cString(b: Uint8Array, start: number, len: number): string {
  let end = start;
  const max = start + len;
  while (end < max && b[end] !== 0) end++;
  return dec.decode(b.subarray(start, end));
}

/** Decodes a numeric field: octal text, or GNU base-256 when the high bit of the first byte is set. */
export function parseNumericField(b: Uint8Array, start: number, len: number): number {
  const first = b[start];
  if (first & 0x80) {
    if (first === 0xff) throw new TarFormatError("negative base-256 number in tar header");
    let v = first & 0x7f;
    for (let i = start + 1; i < start + len; i++) {
      v = v * 256 + b[i];
      if (v > Number.MAX_SAFE_INTEGER) throw new TarFormatError("tar header number too large");
    }
    return v;
  }
  const text = cString(b, start, len).replace(/ +$/, "").replace(/^ +/, "");
  if (text === "") return 0;
  if (!/^[0-7]+$/.test(text)) {
    throw new TarFormatError(`bad octal number "${text}" in tar header`);
  }
  return parseInt(text, 8);
}

/** The checksum of a header block: the sum of its bytes, the checksum field counted as spaces. */
export function headerChecksum(block: Uint8Array, signed = false): number {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) {
    sum += i >= 148 && i < 156 ? 0x20 : signed ? (block[i] << 24) >> 24 : block[i];
  }
  return sum;
}

/**
 * Parses one 512-byte tar header block (the one tar header parser: the index reader here and the
 * layer-blanking stream of layerskip.ts both use it). Returns null for an all-zero block (end of archive).
 * Throws TarFormatError when the block is not a tar header (bad checksum or numbers).
 * Supports ustar (with prefix), GNU (magic `ustar  `) and v7 headers, and base-256 sizes.
 */
export function parseTarHeader(block: Uint8Array): TarHeader | null {
  if (block.length < BLOCK) throw new TarFormatError("short tar header block");
  let zero = true;
  for (let i = 0; i < BLOCK; i++) {
    if (block[i] !== 0) {
      zero = false;
      break;
    }
  }
  if (zero) return null;
  const stored = parseNumericField(block, 148, 8);
  // Some old tars summed signed bytes; Go's archive/tar (docker's reader) accepts both sums.
  if (stored !== headerChecksum(block) && stored !== headerChecksum(block, true)) {
    throw new TarFormatError("bad tar header checksum");
  }
  const magic = cString(block, 257, 6);
  const version = dec.decode(block.subarray(263, 265));
  const format = magic === "ustar" && version === "  "
    ? "gnu"
    : magic === "ustar"
    ? "ustar"
    : magic.startsWith("ustar")
    ? "gnu"
    : "v7";
  let name = cString(block, 0, 100);
  if (format === "ustar") {
    const prefix = cString(block, 345, 155);
    if (prefix) name = `${prefix}/${name}`;
  }
  const flag = block[156] === 0 ? "0" : String.fromCharCode(block[156]);
  return {
    name,
    size: parseNumericField(block, 124, 12),
    typeflag: flag,
    linkname: cString(block, 157, 100),
    format,
  };
}

/** The most digits a PAX record length may have (a record is at most MAX_JSON_ENTRY bytes). */
const MAX_PAX_LEN_DIGITS = 9;

/**
 * Parses PAX extended header records (`<len> <key>=<value>\n`) into a key/value map (null
 * prototype: keys come from the file). Linear in the data: the length field is at most
 * MAX_PAX_LEN_DIGITS decimal digits, its space and the record's closing newline must lie inside
 * the record it announces.
 */
export function parsePaxRecords(data: Uint8Array): Record<string, string> {
  const out: Record<string, string> = Object.create(null);
  let pos = 0;
  while (pos < data.length) {
    if (data[pos] === 0) break; // NUL padding
    let len = 0;
    let sp = pos;
    while (
      sp < data.length && sp - pos <= MAX_PAX_LEN_DIGITS && data[sp] >= 0x30 && data[sp] <= 0x39
    ) {
      len = len * 10 + (data[sp] - 0x30);
      sp++;
    }
    if (
      sp === pos || sp - pos > MAX_PAX_LEN_DIGITS || data[sp] !== 0x20 || len <= sp - pos + 1 ||
      pos + len > data.length || data[pos + len - 1] !== 0x0a
    ) {
      throw new TarFormatError("bad PAX header record");
    }
    const rec = dec.decode(data.subarray(sp + 1, pos + len - 1));
    const eq = rec.indexOf("=");
    if (eq > 0) out[rec.slice(0, eq)] = rec.slice(eq + 1);
    pos += len;
  }
  return out;
}

/** A source of tar bytes: a seekable file or a forward-only (gzip) stream. */
interface Source {
  /** Reads exactly n bytes, or fewer at end of stream. */
  read(n: number): Promise<Uint8Array>;
  /** Skips n bytes; throws TarFormatError when the stream ends first. */
  skip(n: number): Promise<void>;
  pos: number;
  close(): void;
}

class FileSource implements Source {
  pos = 0;
  constructor(private readonly file: Deno.FsFile, private readonly length: number) {}
  async read(n: number): Promise<Uint8Array> {
    const buf = new Uint8Array(n);
    let got = 0;
    while (got < n) {
      const r = await this.file.read(buf.subarray(got));
      if (r === null) break;
      got += r;
    }
    this.pos += got;
    return got === n ? buf : buf.subarray(0, got);
  }
  /** Reads n bytes at an absolute offset (after the scan, for small JSON entries). */
  async readAt(offset: number, n: number): Promise<Uint8Array> {
    this.pos = offset;
    await this.file.seek(offset, Deno.SeekMode.Start);
    return await this.read(n);
  }
  async skip(n: number): Promise<void> {
    if (this.pos + n > this.length) throw new TarFormatError("truncated: an entry ends past EOF");
    this.pos += n;
    await this.file.seek(this.pos, Deno.SeekMode.Start);
  }
  close() {
    this.file.close();
  }
}

class StreamSource implements Source {
  pos = 0;
  #chunk: Uint8Array = new Uint8Array(0);
  #off = 0;
  #done = false;
  constructor(
    private readonly reader: ReadableStreamDefaultReader<Uint8Array>,
    private readonly onClose: () => void,
  ) {}
  async #fill(): Promise<boolean> {
    while (this.#off >= this.#chunk.length) {
      if (this.#done) return false;
      let r: ReadableStreamReadResult<Uint8Array>;
      try {
        r = await this.reader.read();
      } catch (e) {
        throw new TarFormatError(`bad gzip data: ${(e as Error).message}`);
      }
      if (r.done) {
        this.#done = true;
        return false;
      }
      this.#chunk = r.value;
      this.#off = 0;
    }
    return true;
  }
  async read(n: number): Promise<Uint8Array> {
    const buf = new Uint8Array(n);
    let got = 0;
    while (got < n && await this.#fill()) {
      const take = Math.min(n - got, this.#chunk.length - this.#off);
      buf.set(this.#chunk.subarray(this.#off, this.#off + take), got);
      this.#off += take;
      got += take;
    }
    this.pos += got;
    return got === n ? buf : buf.subarray(0, got);
  }
  async skip(n: number): Promise<void> {
    let left = n;
    while (left > 0) {
      if (!await this.#fill()) throw new TarFormatError("truncated: an entry ends past EOF");
      const take = Math.min(left, this.#chunk.length - this.#off);
      this.#off += take;
      left -= take;
      this.pos += take;
    }
  }
  close() {
    this.reader.cancel().catch(() => {});
    this.onClose();
  }
}

const padded = (n: number) => Math.ceil(n / BLOCK) * BLOCK;

function entryType(flag: string): TarEntryType {
  switch (flag) {
    case "0":
    case "7":
      return "file";
    case "5":
      return "directory";
    case "2":
      return "symlink";
    case "1":
      return "hardlink";
    default:
      return "other";
  }
}

function cleanName(name: string): string {
  let n = name;
  while (n.startsWith("./")) n = n.slice(2);
  while (n.endsWith("/")) n = n.slice(0, -1);
  return n;
}

/**
 * Walks the headers of a tar from `src`, calling `onEntry` for each real entry (PAX and GNU
 * long-name records applied). `onEntry` may consume the entry's data by returning the number of
 * bytes it read; the walker skips the rest and the padding.
 */
async function walk(
  src: Source,
  onEntry: (e: TarEntry) => Promise<number> | number,
  signal?: AbortSignal,
): Promise<void> {
  const global: Record<string, string> = Object.create(null);
  let pax: Record<string, string> | undefined;
  let longName: string | undefined;
  let longLink: string | undefined;
  const readSmall = async (size: number, what: string) => {
    if (size > MAX_JSON_ENTRY) throw new TarFormatError(`${what} record is too large (${size} B)`);
    const data = await src.read(size);
    if (data.length < size) throw new TarFormatError("truncated inside a header record");
    await src.skip(padded(size) - size);
    return data;
  };
  let count = 0;
  while (true) {
    if (signal?.aborted) throw new InterruptedError();
    if (++count > MAX_TAR_ENTRIES) {
      throw new TarFormatError(`more than ${MAX_TAR_ENTRIES} entries (the entry cap)`);
    }
    const block = await src.read(BLOCK);
    if (block.length === 0) throw new TarFormatError("truncated: no end-of-archive marker");
    if (block.length < BLOCK) throw new TarFormatError("truncated inside a header");
    const h = parseTarHeader(block);
    if (h === null) return;
    switch (h.typeflag) {
      case "x":
        pax = Object.assign(
          pax ?? Object.create(null),
          parsePaxRecords(await readSmall(h.size, "PAX")),
        );
        continue;
      case "g":
        Object.assign(global, parsePaxRecords(await readSmall(h.size, "PAX")));
        continue;
      case "L":
        longName = cString(await readSmall(h.size, "long name"), 0, h.size);
        continue;
      case "K":
        longLink = cString(await readSmall(h.size, "long link"), 0, h.size);
        continue;
    }
    const attrs: Record<string, string> = Object.assign(Object.create(null), global, pax);
    let size = h.size;
    if (attrs.size !== undefined) {
      size = Number(attrs.size);
      if (!Number.isSafeInteger(size) || size < 0) {
        throw new TarFormatError(`bad PAX size "${attrs.size}"`);
      }
    }
    const name = cleanName(attrs.path ?? longName ?? h.name);
    const linkname = attrs.linkpath ?? longLink ?? h.linkname;
    pax = undefined;
    longName = undefined;
    longLink = undefined;
    const type = entryType(h.typeflag);
    // Links and directories carry no data whatever their size field says.
    const dataSize = type === "file" || type === "other" ? size : 0;
    const offset = src.pos;
    const consumed = await onEntry({
      name,
      offset,
      size: dataSize,
      type,
      ...(linkname ? { linkname } : {}),
    });
    await src.skip(padded(dataSize) - consumed);
  }
}

type Opened = { src: FileSource; compressed: false } | { src: StreamSource; compressed: true };

async function open(path: string): Promise<Opened> {
  const file = await Deno.open(path, { read: true });
  try {
    const { size } = await file.stat();
    const magic = new Uint8Array(2);
    const n = await file.read(magic);
    await file.seek(0, Deno.SeekMode.Start);
    if (n === 2 && magic[0] === 0x1f && magic[1] === 0x8b) {
      const stream = file.readable.pipeThrough(new DecompressionStream("gzip"));
      // file.readable closes the file when the stream ends or is cancelled.
      return { src: new StreamSource(stream.getReader(), () => {}), compressed: true };
    }
    return { src: new FileSource(file, size), compressed: false };
  } catch (e) {
    file.close();
    throw e;
  }
}

function wrap(path: string, e: unknown): Error {
  if (e instanceof TarFormatError) {
    return integrityError(
      `Cannot read image tar "${path}": ${e.message}`,
      "Re-copy the file from the transfer media; it may be truncated or not a `docker save` tar.",
    );
  }
  if (e instanceof Deno.errors.NotFound) {
    return integrityError(`Cannot read image tar "${path}": no such file`);
  }
  return e as Error;
}

/**
 * Lists the entries of a tar (plain or gzip) with the offsets of their data, without reading
 * the data. Offsets of a gzip tar are in the decompressed stream. Errors are integrity errors
 * naming the file.
 */
export async function tarEntries(
  path: string,
  opts: { signal?: AbortSignal } = {},
): Promise<TarEntry[]> {
  const out: TarEntry[] = [];
  let opened: Opened | undefined;
  try {
    opened = await open(path);
    await walk(opened.src, (e) => {
      out.push(e);
      return 0;
    }, opts.signal);
    return out;
  } catch (e) {
    throw wrap(path, e);
  } finally {
    opened?.src.close();
  }
}

const JSON_NAMES = new Set(["manifest.json", "index.json", "oci-layout", "repositories"]);

/** Whether an entry may be a small JSON file we need (configs, manifests, index). */
function wantedJson(e: TarEntry): "yes" | "maybe" | "no" {
  if (e.type !== "file" || e.size > MAX_JSON_ENTRY) return "no";
  if (JSON_NAMES.has(e.name)) return "yes";
  if (!e.name.includes("/") && e.name.endsWith(".json")) return "yes";
  if (e.name.startsWith("blobs/")) return "maybe"; // OCI blob: a JSON one starts with "{"
  return "no";
}

/**
 * Reads the index of a `docker save` tar: its images (RepoTags, image ID computed from the
 * config bytes, diff IDs, layer paths, config Env), its layout and entry sizes. Understands the
 * legacy layout (engine ≤ 24), the OCI layout with or without a docker `manifest.json` (engine
 * 25+, skopeo), and gzip-compressed tars. Errors are integrity errors naming the file.
 */
export async function readTarIndex(
  path: string,
  opts: ReadTarIndexOptions = {},
): Promise<TarIndex> {
  const entries = new Map<string, TarEntry>();
  const captured = new Map<string, Uint8Array>();
  let opened: Opened | undefined;
  try {
    opened = await open(path);
    const { src, compressed } = opened;
    let capturedTotal = 0;
    await walk(src, async (e) => {
      entries.set(e.name, e);
      if (!compressed) return 0;
      // A stream cannot seek back: keep the small JSON entries as they pass.
      const want = wantedJson(e);
      if (want === "no" || e.size === 0) return 0;
      const first = await src.read(1);
      if (first.length < 1) throw new TarFormatError("truncated inside an entry");
      if (want === "maybe" && first[0] !== 0x7b) return 1;
      capturedTotal += e.size;
      if (capturedTotal > MAX_CAPTURED_TOTAL) {
        throw new TarFormatError("too many JSON blobs to index");
      }
      const rest = await src.read(e.size - 1);
      if (rest.length < e.size - 1) throw new TarFormatError("truncated inside an entry");
      const data = new Uint8Array(e.size);
      data.set(first, 0);
      data.set(rest, 1);
      captured.set(e.name, data);
      return e.size;
    }, opts.signal);
    const reader = new EntryReader(
      entries,
      captured,
      opened.compressed ? undefined : opened.src,
      opts,
    );
    const layout = entries.has("oci-layout") ? "oci" : "legacy";
    const images = entries.has("manifest.json")
      ? await imagesFromDockerManifest(reader)
      : entries.has("index.json")
      ? await imagesFromOciIndex(reader)
      : (() => {
        throw new TarFormatError(
          "no manifest.json or index.json: not a `docker save` tar",
        );
      })();
    const entrySizes: Record<string, number> = {};
    for (const e of entries.values()) {
      if (e.type === "directory") continue;
      const target = reader.resolve(e.name);
      if (target) entrySizes[e.name] = target.size;
    }
    return { layout, compressed, images, entrySizes };
  } catch (e) {
    throw wrap(path, e);
  } finally {
    opened?.src.close();
  }
}

/** Options of `readTarIndex`. */
export interface ReadTarIndexOptions {
  /** Checked between entries and between JSON reads: aborting throws InterruptedError. */
  signal?: AbortSignal;
  /** Counts the JSON documents read from the tar (tests: each is read once). */
  stats?: { jsonReads: number };
}

/** Reads small entries after the scan: by offset from a file, or from what the stream kept. */
class EntryReader {
  /** Parsed image configs by resolved entry name: each config is read and hashed once. */
  readonly configs = new Map<string, Promise<ImageConfigInfo>>();
  constructor(
    private readonly entries: Map<string, TarEntry>,
    private readonly captured: Map<string, Uint8Array>,
    private readonly file: FileSource | undefined,
    private readonly opts: ReadTarIndexOptions = {},
  ) {}

  /** Follows symlinks and hard links (relative to the link's folder) to a regular entry. */
  resolve(name: string): TarEntry | undefined {
    let cur = this.entries.get(cleanName(name));
    for (let hops = 0; cur && hops < 8; hops++) {
      if (cur.type === "file" || cur.type === "other") return cur;
      if (!cur.linkname || (cur.type !== "symlink" && cur.type !== "hardlink")) return undefined;
      const base = cur.type === "symlink" ? cur.name.split("/").slice(0, -1) : [];
      const parts = [...base];
      for (const seg of cur.linkname.split("/")) {
        if (seg === "" || seg === ".") continue;
        if (seg === "..") parts.pop();
        else parts.push(seg);
      }
      cur = this.entries.get(parts.join("/"));
    }
    return undefined;
  }

  has(name: string): boolean {
    return this.resolve(name) !== undefined;
  }

  async bytes(name: string): Promise<Uint8Array> {
    if (this.opts.signal?.aborted) throw new InterruptedError();
    if (this.opts.stats) this.opts.stats.jsonReads++;
    const e = this.resolve(name);
    if (!e) throw new TarFormatError(`"${name}" is listed but not in the tar`);
    if (e.size > MAX_JSON_ENTRY) {
      throw new TarFormatError(`"${name}" is too large to be a JSON document (${e.size} B)`);
    }
    if (!this.file) {
      const data = this.captured.get(e.name);
      if (!data) throw new TarFormatError(`"${name}" is not a JSON document`);
      return data;
    }
    const data = await this.file.readAt(e.offset, e.size);
    if (data.length < e.size) throw new TarFormatError(`truncated inside "${name}"`);
    return data;
  }

  async json(name: string): Promise<unknown> {
    const data = await this.bytes(name);
    try {
      return JSON.parse(dec.decode(data));
    } catch (err) {
      throw new TarFormatError(`"${name}" is not valid JSON: ${(err as Error).message}`);
    }
  }
}

function sha256Hex(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

interface ImageConfigInfo {
  imageId: string;
  diffIds: string[];
  env: string[];
}

function readConfig(reader: EntryReader, name: string): Promise<ImageConfigInfo> {
  const key = reader.resolve(name)?.name ?? name;
  let p = reader.configs.get(key);
  if (!p) {
    p = readConfigOnce(reader, name);
    reader.configs.set(key, p);
  }
  return p;
}

async function readConfigOnce(reader: EntryReader, name: string): Promise<ImageConfigInfo> {
  const bytes = await reader.bytes(name);
  let cfg: unknown;
  try {
    cfg = JSON.parse(dec.decode(bytes));
  } catch (err) {
    throw new TarFormatError(`image config "${name}" is not valid JSON: ${(err as Error).message}`);
  }
  const obj = (typeof cfg === "object" && cfg !== null ? cfg : {}) as {
    rootfs?: { diff_ids?: unknown };
    config?: { Env?: unknown } | null;
  };
  const diffIds = Array.isArray(obj.rootfs?.diff_ids)
    ? obj.rootfs.diff_ids.filter((d): d is string => typeof d === "string")
    : [];
  const envRaw = obj.config?.Env;
  const env = Array.isArray(envRaw) ? envRaw.filter((v): v is string => typeof v === "string") : [];
  return { imageId: `sha256:${sha256Hex(bytes)}`, diffIds, env };
}

async function imagesFromDockerManifest(reader: EntryReader): Promise<TarImage[]> {
  const parsed = DockerSaveManifestSchema.safeParse(await reader.json("manifest.json"));
  if (!parsed.success) {
    throw new TarFormatError(`bad manifest.json: ${formatZodError(parsed.error)}`);
  }
  const images: TarImage[] = [];
  for (const m of parsed.data) {
    const cfg = await readConfig(reader, m.Config);
    for (const l of m.Layers) {
      if (!reader.has(l)) throw new TarFormatError(`layer "${l}" is listed but not in the tar`);
    }
    if (cfg.diffIds.length !== m.Layers.length) {
      throw new TarFormatError(
        `image config "${m.Config}" lists ${cfg.diffIds.length} layers, manifest.json ${m.Layers.length}`,
      );
    }
    images.push({
      repoTags: (m.RepoTags ?? []).map(tarRef),
      imageId: cfg.imageId,
      diffIds: cfg.diffIds,
      layerPaths: m.Layers.map(cleanName),
      env: cfg.env,
    });
  }
  return images;
}

interface Descriptor {
  mediaType?: string;
  digest: string;
  annotations?: Record<string, string>;
}

function descriptors(json: unknown, what: string): Descriptor[] {
  if (typeof json !== "object" || json === null) {
    throw new TarFormatError(`${what} is not a JSON object`);
  }
  const list = (json as { manifests?: unknown }).manifests;
  if (!Array.isArray(list)) throw new TarFormatError(`${what} has no "manifests" list`);
  return list.filter((d): d is Descriptor =>
    typeof d === "object" && d !== null && typeof (d as Descriptor).digest === "string"
  );
}

function blobPath(digest: string): string {
  const m = /^sha256:([0-9a-f]{64})$/.exec(digest);
  if (!m) throw new TarFormatError(`unsupported digest "${digest}"`);
  return `blobs/sha256/${m[1]}`;
}

/** An annotation's string value; a non-string one is an error (the file is crafted or corrupt). */
function annotation(a: unknown, key: string): string | undefined {
  if (typeof a !== "object" || a === null || !Object.hasOwn(a, key)) return undefined;
  const v = (a as Record<string, unknown>)[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string") throw new TarFormatError(`annotation "${key}" is not a string`);
  return v;
}

/** A ref from a tar: whitespace or control characters inside it are an error. */
function tarRef(ref: string): string {
  const r = normalizeRef(ref);
  // deno-lint-ignore no-control-regex
  if (/[\s\x00-\x1f\x7f]/.test(r) || r === "") {
    throw new TarFormatError(`image name ${JSON.stringify(ref)} is not a valid reference`);
  }
  return r;
}

function refFromAnnotations(a: unknown): string | undefined {
  const full = annotation(a, "io.containerd.image.name");
  if (full) return tarRef(full);
  const name = annotation(a, "org.opencontainers.image.ref.name");
  // A bare tag ("latest") is not a ref; a name with a repository is.
  if (name && /[:/]/.test(name)) return tarRef(name);
  return undefined;
}

async function imagesFromOciIndex(reader: EntryReader): Promise<TarImage[]> {
  const byId = new Map<string, TarImage>();
  // Each blob is parsed once (a crafted index may list the same child many times, nested: k^depth
  // visits otherwise); each (blob, ref) pair is applied once; descriptors are capped in total.
  const docs = new Map<string, Promise<unknown>>();
  const applied = new Set<string>();
  let listed = 0;
  const visit = async (d: Descriptor, ref: string | undefined, depth: number) => {
    if (depth > 4) throw new TarFormatError("index.json nests too deeply");
    if (++listed > MAX_OCI_DESCRIPTORS) {
      throw new TarFormatError(
        `the OCI index lists more than ${MAX_OCI_DESCRIPTORS} manifests (the descriptor cap)`,
      );
    }
    const path = blobPath(d.digest);
    const key = `${path}\0${ref ?? ""}`;
    if (applied.has(key)) return;
    applied.add(key);
    let docP = docs.get(path);
    if (!docP) {
      docP = reader.json(path);
      docs.set(path, docP);
    }
    const raw = await docP;
    if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
      throw new TarFormatError(`"${path}" is not a JSON object`);
    }
    const doc = raw as {
      mediaType?: string;
      manifests?: unknown;
      config?: { digest?: unknown } | null;
      layers?: unknown;
    };
    if (Array.isArray(doc.manifests)) {
      for (const child of descriptors(doc, `"${path}"`)) {
        await visit(child, refFromAnnotations(child.annotations) ?? ref, depth + 1);
      }
      return;
    }
    if (
      typeof doc.config !== "object" || doc.config === null ||
      typeof doc.config.digest !== "string" || !Array.isArray(doc.layers)
    ) {
      throw new TarFormatError(`"${path}" is neither an image manifest nor an index`);
    }
    const cfg = await readConfig(reader, blobPath(doc.config.digest));
    // Attestation manifests (buildkit) have an "unknown" config and no rootfs: skip them.
    if (cfg.diffIds.length === 0 && doc.layers.length > 0) return;
    if (cfg.diffIds.length !== doc.layers.length) {
      throw new TarFormatError(
        `image config "${
          blobPath(doc.config.digest)
        }" lists ${cfg.diffIds.length} layers, "${path}" ${doc.layers.length}`,
      );
    }
    const layerPaths = doc.layers.map((l: { digest?: unknown } | null) => {
      if (typeof l !== "object" || l === null || typeof l.digest !== "string") {
        throw new TarFormatError(`"${path}" has a bad layer`);
      }
      const p = blobPath(l.digest);
      if (!reader.has(p)) throw new TarFormatError(`layer "${p}" is listed but not in the tar`);
      return p;
    });
    const prev = byId.get(cfg.imageId);
    if (prev) {
      if (ref && !prev.repoTags.includes(ref)) prev.repoTags.push(ref);
      return;
    }
    byId.set(cfg.imageId, {
      repoTags: ref ? [ref] : [],
      imageId: cfg.imageId,
      diffIds: cfg.diffIds,
      layerPaths,
      env: cfg.env,
    });
  };
  for (const d of descriptors(await reader.json("index.json"), "index.json")) {
    await visit(d, refFromAnnotations(d.annotations), 0);
  }
  return [...byId.values()];
}

/** All refs the tar's images carry (RepoTags, normalized), deduplicated, in order. */
export function resolveTarRefs(index: TarIndex): string[] {
  const out: string[] = [];
  for (const img of index.images) {
    for (const t of img.repoTags) {
      const r = normalizeRef(t);
      if (!out.includes(r)) out.push(r);
    }
  }
  return out;
}
