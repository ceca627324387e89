/**
 * Builds synthetic tar files in memory for tests: ustar headers, optional PAX and GNU long-name
 * records, base-256 sizes, gzip, and `docker save` tars in the legacy and OCI layouts.
 */
import { concatBytes } from "../../src/copy.ts";
import { createHash } from "node:crypto";

const enc = new TextEncoder();
const BLOCK = 512;

export interface TarSpecEntry {
  name: string;
  /** Entry data; when absent, `size` zero bytes are written (keep it small). */
  data?: Uint8Array | string;
  size?: number;
  /** Type flag: "0" file (default), "2" symlink, "5" dir, "1" hard link. */
  type?: string;
  linkname?: string;
  /** Emit a PAX `x` record carrying the path (and size) before this entry. */
  pax?: boolean;
  /** Emit a GNU `L` long-name record before this entry. */
  gnuLongName?: boolean;
  /** Write `data` (and its size) even for a type that carries none (a crafted tar). */
  withData?: boolean;
}

export interface HeaderSpec {
  name: string;
  size: number;
  type?: string;
  linkname?: string;
  /** Write the size as GNU base-256 instead of octal. */
  base256?: boolean;
  /** Write a GNU magic (`ustar  \0`) instead of POSIX `ustar\0` `00`. */
  gnu?: boolean;
  /** ustar prefix field (POSIX only). */
  prefix?: string;
}

function writeString(b: Uint8Array, off: number, len: number, s: string) {
  const bytes = enc.encode(s);
  b.set(bytes.subarray(0, len), off);
}

function writeOctal(b: Uint8Array, off: number, len: number, n: number) {
  writeString(b, off, len, n.toString(8).padStart(len - 1, "0") + "\0");
}

/** Builds one 512-byte tar header block. */
export function buildHeader(h: HeaderSpec): Uint8Array {
  const b = new Uint8Array(BLOCK);
  writeString(b, 0, 100, h.name);
  writeOctal(b, 100, 8, h.type === "5" ? 0o755 : 0o644);
  writeOctal(b, 108, 8, 0);
  writeOctal(b, 116, 8, 0);
  if (h.base256 || h.size > 0o77777777777) {
    b[124] = 0x80;
    let v = h.size;
    for (let i = 135; i > 124; i--) {
      b[i] = v % 256;
      v = Math.floor(v / 256);
    }
  } else {
    writeOctal(b, 124, 12, h.size);
  }
  writeOctal(b, 136, 12, 1700000000);
  b[156] = (h.type ?? "0").charCodeAt(0);
  writeString(b, 157, 100, h.linkname ?? "");
  if (h.gnu) {
    writeString(b, 257, 8, "ustar  \0");
  } else {
    writeString(b, 257, 6, "ustar\0");
    writeString(b, 263, 2, "00");
    writeString(b, 345, 155, h.prefix ?? "");
  }
  for (let i = 148; i < 156; i++) b[i] = 0x20;
  let sum = 0;
  for (const x of b) sum += x;
  writeString(b, 148, 8, sum.toString(8).padStart(6, "0") + "\0 ");
  return b;
}

function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len = String(len).length + body.length;
  return `${len}${body}`;
}

function padTo(data: Uint8Array): Uint8Array[] {
  const rem = data.length % BLOCK;
  return rem ? [data, new Uint8Array(BLOCK - rem)] : [data];
}

const concat = (parts: Uint8Array[]) => concatBytes(parts);

/** Builds a whole tar (with the two zero end blocks unless `end: false`). */
export function buildTar(entries: TarSpecEntry[], opts: { end?: boolean } = {}): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const e of entries) {
    const data = typeof e.data === "string"
      ? enc.encode(e.data)
      : e.data ?? new Uint8Array(e.size ?? 0);
    const type = e.type ?? "0";
    const hasData = type === "0" || e.withData === true;
    let name = e.name;
    if (e.pax) {
      const rec = enc.encode(
        paxRecord("path", e.name) + (hasData ? paxRecord("size", String(data.length)) : ""),
      );
      parts.push(buildHeader({ name: "PaxHeaders/x", size: rec.length, type: "x" }));
      parts.push(...padTo(rec));
      name = e.name.slice(0, 99);
    }
    if (e.gnuLongName) {
      const rec = enc.encode(e.name + "\0");
      parts.push(buildHeader({ name: "././@LongLink", size: rec.length, type: "L", gnu: true }));
      parts.push(...padTo(rec));
      name = e.name.slice(0, 99);
    }
    parts.push(
      buildHeader({ name, size: hasData ? data.length : 0, type, linkname: e.linkname }),
    );
    if (hasData && data.length) parts.push(...padTo(data));
  }
  if (opts.end !== false) parts.push(new Uint8Array(BLOCK * 2));
  return concat(parts);
}

/** Gzips bytes. */
export async function gzip(data: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([data as Uint8Array<ArrayBuffer>]).stream().pipeThrough(
    new CompressionStream("gzip"),
  );
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** Lower-case hex SHA-256. */
export function sha256(data: Uint8Array | string): string {
  return createHash("sha256").update(data).digest("hex");
}

/** An image for `dockerSaveTar`. */
export interface FakeImage {
  repoTags: string[];
  /** Layer contents (any bytes; they stand in for layer tars). */
  layers: (Uint8Array | string)[];
  env?: string[];
  /** Write `"config": null` like an image made by `docker import`. */
  nullConfig?: boolean;
}

/** What `dockerSaveTar` wrote, for assertions. */
export interface FakeSave {
  tar: Uint8Array;
  images: { imageId: string; diffIds: string[]; layerPaths: string[]; configBytes: Uint8Array }[];
}

/**
 * Builds a `docker save`-like tar. legacy: `<id>.json` + `<dir>/layer.tar` with manifest.json
 * last (as engine 20.10 writes it). oci: `blobs/sha256/...`, `index.json`, `oci-layout`, and a
 * docker `manifest.json` unless `dockerManifest: false` (like skopeo's oci-archive).
 */
export function dockerSaveTar(
  images: FakeImage[],
  layout: "legacy" | "oci",
  opts: { dockerManifest?: boolean; symlinkDuplicateLayers?: boolean } = {},
): FakeSave {
  const entries: TarSpecEntry[] = [];
  const manifest: { Config: string; RepoTags: string[] | null; Layers: string[] }[] = [];
  const index: { mediaType: string; digest: string; size: number; annotations?: object }[] = [];
  const out: FakeSave["images"] = [];
  const seen = new Map<string, string>();
  for (const img of images) {
    const layerBytes = img.layers.map((l) => (typeof l === "string" ? enc.encode(l) : l));
    const diffIds = layerBytes.map((l) => `sha256:${sha256(l)}`);
    const config = {
      architecture: "amd64",
      os: "linux",
      config: img.nullConfig ? null : { Env: img.env ?? ["PATH=/usr/bin"] },
      rootfs: { type: "layers", diff_ids: diffIds },
    };
    const configBytes = enc.encode(JSON.stringify(config));
    const cfgHex = sha256(configBytes);
    const layerPaths: string[] = [];
    layerBytes.forEach((l, i) => {
      const hex = sha256(l);
      const path = layout === "legacy" ? `${sha256(cfgHex + i)}/layer.tar` : `blobs/sha256/${hex}`;
      layerPaths.push(path);
      if (layout === "legacy") {
        entries.push({ name: path.split("/")[0] + "/", type: "5" });
        const dup = seen.get(hex);
        if (dup && opts.symlinkDuplicateLayers) {
          entries.push({ name: path, type: "2", linkname: `../${dup}` });
        } else {
          entries.push({ name: path, data: l });
          seen.set(hex, path);
        }
      } else if (!seen.has(hex)) {
        entries.push({ name: path, data: l });
        seen.set(hex, path);
      }
    });
    const configPath = layout === "legacy" ? `${cfgHex}.json` : `blobs/sha256/${cfgHex}`;
    entries.push({ name: configPath, data: configBytes });
    manifest.push({ Config: configPath, RepoTags: img.repoTags, Layers: layerPaths });
    if (layout === "oci") {
      const m = {
        schemaVersion: 2,
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        config: {
          mediaType: "application/vnd.oci.image.config.v1+json",
          digest: `sha256:${cfgHex}`,
          size: configBytes.length,
        },
        layers: layerBytes.map((l) => ({
          mediaType: "application/vnd.oci.image.layer.v1.tar",
          digest: `sha256:${sha256(l)}`,
          size: l.length,
        })),
      };
      const mBytes = enc.encode(JSON.stringify(m));
      const mHex = sha256(mBytes);
      entries.push({ name: `blobs/sha256/${mHex}`, data: mBytes });
      const tags = img.repoTags.length ? img.repoTags : [undefined];
      for (const t of tags) {
        index.push({
          mediaType: "application/vnd.oci.image.manifest.v1+json",
          digest: `sha256:${mHex}`,
          size: mBytes.length,
          ...(t
            ? {
              annotations: {
                "io.containerd.image.name": t.includes("/") ? `docker.io/${t}` : t,
                "org.opencontainers.image.ref.name": t.split(":").pop(),
              },
            }
            : {}),
        });
      }
    }
    out.push({ imageId: `sha256:${cfgHex}`, diffIds, layerPaths, configBytes });
  }
  if (layout === "oci") {
    entries.push({ name: "oci-layout", data: '{"imageLayoutVersion":"1.0.0"}' });
    entries.push({
      name: "index.json",
      data: JSON.stringify({ schemaVersion: 2, manifests: index }),
    });
    if (opts.dockerManifest !== false) {
      entries.push({ name: "manifest.json", data: JSON.stringify(manifest) });
    }
  } else {
    entries.push({ name: "manifest.json", data: JSON.stringify(manifest) });
    entries.push({ name: "repositories", data: "{}" });
  }
  return { tar: buildTar(entries), images: out };
}
