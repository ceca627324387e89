/**
 * Streaming SHA-256 of files: large reads into `node:crypto` (the fastest SHA-256 here: about 2x
 * coreutils `sha256sum`, 9x WebCrypto on a whole buffer). Memory stays at a few chunks per file
 * whatever the file's size.
 */
import { createHash } from "node:crypto";
import { throwIfAborted } from "./errors.ts";

/**
 * The read size of every file hashed or copied (hashFile, hashFiles, copyHashed): 256 KiB.
 * Measured with the bench/ suite (page cache dropped, as on fresh media): hashing 1 GiB took
 * 1.3 s with 128-256 KiB reads against 6.7-10 s with 4 MiB reads (the kernel's readahead keeps
 * ahead of small sequential reads; a 4 MiB read waits for its own I/O). Warm, they are alike.
 * (The load stream uses its own size: src/images/load.ts.)
 */
export const CHUNK_SIZE = 256 * 1024;

export interface HashResult {
  /** Lower-case hex digest. */
  sha256: string;
  /** Bytes read. */
  size: number;
}

/** A streaming SHA-256: feed it bytes, then ask for the hex digest once. */
export interface Sha256 {
  update(bytes: Uint8Array): void;
  hex(): string;
}

/** Creates a streaming SHA-256 hasher. */
export function createSha256(): Sha256 {
  const h = createHash("sha256");
  return {
    update: (b) => {
      h.update(b);
    },
    hex: () => h.digest("hex"),
  };
}

/** SHA-256 of a byte string, as lower-case hex (for tests and small blobs). */
export function sha256Hex(bytes: Uint8Array | string): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** `3f2a9c1d0b7e…`: the start of a digest, for messages (full digests go into reports). */
export function shortDigest(hex: string | undefined, n = 12): string {
  if (!hex) return "(none)";
  return hex.length > n ? `${hex.slice(0, n)}…` : hex;
}

/**
 * Reads a file once in `CHUNK_SIZE` chunks, calling `onChunk` with each (the buffer is reused
 * after `onChunk` returns or its promise settles). Returns the bytes read.
 */
export async function readChunks(
  path: string,
  onChunk: (chunk: Uint8Array) => void | Promise<void>,
  signal?: AbortSignal,
  chunkSize = CHUNK_SIZE,
): Promise<number> {
  using file = await Deno.open(path, { read: true });
  const buf = new Uint8Array(chunkSize);
  let total = 0;
  while (true) {
    throwIfAborted(signal);
    // Fill the buffer as far as the file allows: short reads would shrink every hash update.
    const filled = await readFull(file, buf);
    if (filled === 0) break;
    total += filled;
    const r = onChunk(buf.subarray(0, filled));
    if (r) await r;
    if (filled < buf.length) break;
  }
  return total;
}

/**
 * SHA-256 of one file, streamed; the read of the next chunk overlaps the hashing of this one.
 * `onBytes` gets the size of each chunk as it is hashed (for progress); `signal` aborts between
 * chunks with an InterruptedError. The one file-hashing routine of the project.
 */
export async function hashFile(
  path: string,
  onBytes?: (n: number) => void,
  signal?: AbortSignal,
  chunkSize = CHUNK_SIZE,
): Promise<HashResult> {
  const h = createHash("sha256");
  const bufs = [new Uint8Array(chunkSize), new Uint8Array(chunkSize)];
  using file = await Deno.open(path, { read: true });
  let size = 0;
  let i = 0;
  let n = await readFull(file, bufs[0]);
  while (n > 0) {
    throwIfAborted(signal);
    // The next read runs while this chunk is hashed; a failure there surfaces when awaited.
    const next = n < chunkSize ? Promise.resolve(0) : readFull(file, bufs[1 - i]);
    next.catch(() => {});
    h.update(bufs[i].subarray(0, n));
    size += n;
    onBytes?.(n);
    n = await next;
    i = 1 - i;
  }
  return { sha256: h.digest("hex"), size };
}

/** Reads until the buffer is full or EOF; returns the byte count (0 at EOF). */
export async function readFull(file: Deno.FsFile, buf: Uint8Array): Promise<number> {
  let filled = 0;
  while (filled < buf.length) {
    const r = await file.read(buf.subarray(filled));
    if (r === null) break;
    filled += r;
  }
  return filled;
}

export interface HashFilesOptions {
  /** Files hashed at the same time (default 3: reads of one overlap the hashing of another). */
  concurrency?: number;
  /** Called with (path, bytes) as each chunk is hashed. */
  onBytes?: (n: number, path: string) => void;
  /** Called when one file is done (or failed). */
  onDone?: (path: string, result: HashResult | Error) => void;
  signal?: AbortSignal;
}

/**
 * Hashes many files a few at a time. Returns one entry per path, in the input order: a result,
 * or the Error that reading it raised (a missing file is an error, not a throw). An abort
 * throws InterruptedError.
 */
export async function hashFiles(
  paths: string[],
  opts: HashFilesOptions = {},
): Promise<Map<string, HashResult | Error>> {
  const out = new Map<string, HashResult | Error>();
  const concurrency = Math.max(1, opts.concurrency ?? 3);
  let next = 0;
  const worker = async () => {
    while (next < paths.length) {
      const p = paths[next++];
      let r: HashResult | Error;
      try {
        r = await hashFile(p, (n) => opts.onBytes?.(n, p), opts.signal);
      } catch (e) {
        if (opts.signal?.aborted) throw e;
        r = e instanceof Error ? e : new Error(String(e));
      }
      out.set(p, r);
      opts.onDone?.(p, r);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, paths.length) }, worker));
  // Input order, whatever order they finished in.
  return new Map(paths.map((p) => [p, out.get(p)!]));
}

/** SHA-256 of a file (hashFile), or undefined when it cannot be read. */
export async function sha256OfFile(path: string): Promise<string | undefined> {
  try {
    return (await hashFile(path)).sha256;
  } catch {
    return undefined;
  }
}
